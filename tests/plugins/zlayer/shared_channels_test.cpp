// Shared data channels: several public connections per data WebSocket (the core multiplexer
// over one wss data socket), with TunnelServer and TunnelAgent in one process over real
// loopback sockets. Bulk echo through one socket, half-close, refused stream ids, malformed
// frames, a broken socket, and fallback to per-connection sockets with peers that do not share.
#include <gtest/gtest.h>
#include <spdlog/sinks/null_sink.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <random>
#include <sstream>

#include "agent/tunnel_agent.hpp"
#include "codec/codec.hpp"
#include "codec/extension.hpp"
#include "codec/mux_codec.hpp"
#include "process.hpp"
#include "register_service.hpp"
#include "server/tunnel_server.hpp"
#include "tcp_echo.hpp"
#include "test_certs.hpp"
#include "transport/data_channel.hpp"
#include "transport/data_socket.hpp"
#include "transport/ws_loop.hpp"
#include "tunnelkit/mux/session.hpp"
#include "tunnelkit/stream/deadline.hpp"
#include "wait.hpp"

namespace tunnelkit::zlayer {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;

// Logs into a string (and to stderr with ZLAYER_TEST_LOG=1).
struct CapturedLog {
  std::ostringstream text;
  std::shared_ptr<spdlog::logger> logger;
  CapturedLog() {
    std::vector<spdlog::sink_ptr> sinks{std::make_shared<spdlog::sinks::ostream_sink_mt>(text)};
    if (std::getenv("ZLAYER_TEST_LOG") != nullptr) {
      sinks.push_back(std::make_shared<spdlog::sinks::stderr_sink_mt>());
    }
    logger = std::make_shared<spdlog::logger>("zlayer-shared", sinks.begin(), sinks.end());
    logger->set_level(spdlog::level::debug);
  }
  std::string str() {
    logger->flush();
    return text.str();
  }
  bool Has(const std::string& needle) { return str().find(needle) != std::string::npos; }
};

using test::Sleep;
using test::WaitFor;

struct Harness {
  asio::io_context io;
  test::TestCert cert;
  CapturedLog log;
  std::unique_ptr<TunnelServer> server;
  tunnelkit::test::TcpEcho echo{io};
  std::unique_ptr<TunnelAgent> agent;
  bool tls = true;

  bool StartServer(bool tls_on, bool server_shares = true) {
    tls = tls_on;
    EXPECT_TRUE(cert.ok);
    ServerOptions options;
    const int low = tunnelkit::test::FreeTcpPort();
    options.ws.host = "127.0.0.1";
    if (tls) {
      options.ws.tls_cert = cert.cert;
      options.ws.tls_key = cert.key;
    }
    options.ports = PortPool(static_cast<std::uint16_t>(low), static_cast<std::uint16_t>(low + 1));
    options.tokens.Add({HashToken("good-token"), std::nullopt});
    options.tokens.Add({HashToken("hand-token"), std::nullopt});
    options.shared_data_channels = server_shares;
    server = std::make_unique<TunnelServer>(io, std::move(options), log.logger);
    std::string error;
    const bool ok = server->Start(error);
    EXPECT_TRUE(ok) << error;
    return ok;
  }

  transport::WsUrl Url() const {
    return transport::WsUrl{tls, "127.0.0.1", server->listen_port(), "/tunnel/v1"};
  }

  bool StartAgent(DataChannels mode, std::size_t max_streams = 1024) {
    AgentOptions options;
    options.server = Url();
    options.token = "good-token";
    if (tls) options.tls.tls_ca = cert.cert;
    std::string error;
    options.services.push_back(*ServiceSpec::Parse("echo:" + std::to_string(echo.port()), error));
    options.backoff.base = std::chrono::milliseconds(200);
    options.backoff.cap = std::chrono::milliseconds(400);
    options.data_channels = mode;
    options.shared_max_streams = max_streams;
    agent = std::make_unique<TunnelAgent>(io, std::move(options), log.logger);
    const bool ok = agent->Start(error);
    EXPECT_TRUE(ok) << error;
    if (ok) asio::co_spawn(io, agent->Run(), asio::detached);
    return ok;
  }

  // The public port once registered, 0 on failure.
  asio::awaitable<int> PublicPort() {
    co_await WaitFor([&] { return !agent->registered().empty(); }, std::chrono::seconds(10));
    EXPECT_FALSE(agent->registered().empty());
    if (agent->registered().empty()) co_return 0;
    const auto reg = agent->registered()[0];
    EXPECT_TRUE(reg.ok) << reg.error;
    co_return reg.ok ? reg.public_port : 0;
  }

  void Run(std::function<asio::awaitable<void>()> body, std::chrono::seconds limit) {
    bool done = false;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          co_await body();
          if (agent) agent->Stop();
          server->Stop("test over");
          done = true;
          co_await Sleep(std::chrono::milliseconds(350));
          io.stop();
        },
        [](std::exception_ptr e) {
          if (e) std::rethrow_exception(e);
        });
    asio::steady_timer guard(io, limit);
    guard.async_wait([&](boost::system::error_code ec) {
      if (!ec) io.stop();
    });
    io.run();
    EXPECT_TRUE(done) << "timed out";
  }
};

std::string RandomBytes(std::size_t size, unsigned seed) {
  std::string body(size, '\0');
  std::mt19937 rng(seed);
  for (auto& c : body) c = static_cast<char>(rng());
  return body;
}

// A client connection to the public port on 127.0.0.1 (`ec` says whether it connected).
asio::awaitable<tcp::socket> ConnectPublic(int port, boost::system::error_code& ec) {
  tcp::socket s(co_await asio::this_coro::executor);
  co_await s.async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port),
                           asio::redirect_error(asio::use_awaitable, ec));
  co_return s;
}

// One client: sends `body` (then half-closes) while reading the echo until eof; returns what
// came back ("" on a connection error).
asio::awaitable<std::string> EchoThrough(int port, std::string body) {
  auto executor = co_await asio::this_coro::executor;
  boost::system::error_code ec;
  tcp::socket s = co_await ConnectPublic(port, ec);
  if (ec) co_return std::string();
  auto writer_done = std::make_shared<bool>(false);
  asio::co_spawn(
      executor,
      [&s, &body, writer_done]() -> asio::awaitable<void> {
        boost::system::error_code wec;
        co_await asio::async_write(s, asio::buffer(body),
                                   asio::redirect_error(asio::use_awaitable, wec));
        if (!wec) s.shutdown(tcp::socket::shutdown_send, wec);
        *writer_done = true;
      },
      asio::detached);
  std::string back;
  std::vector<char> buf(64 * 1024);
  for (;;) {
    const std::size_t n = co_await s.async_read_some(asio::buffer(buf),
                                                     asio::redirect_error(asio::use_awaitable, ec));
    back.append(buf.data(), n);
    if (ec) break;
  }
  // The writer references `s` and `body`: wait for it before they go.
  while (!*writer_done) co_await Sleep(std::chrono::milliseconds(5));
  if (ec != asio::error::eof) co_return std::string();
  co_return back;
}

// 50 concurrent connections each echo 1 MiB (SHA-256 compared) over wss; the server accepts
// exactly one data WebSocket for all of them.
TEST(ZlayerSharedChannels, FiftyConnectionsShareOneWssDataSocket) {
  Harness h;
  ASSERT_TRUE(h.StartServer(true));
  ASSERT_TRUE(h.StartAgent(DataChannels::kAuto));  // auto on wss = shared
  h.Run(
      [&]() -> asio::awaitable<void> {
        const int port = co_await h.PublicPort();
        if (port == 0) co_return;
        constexpr int kConnections = 50;
        int good = 0;
        int finished = 0;
        for (int i = 0; i < kConnections; ++i) {
          asio::co_spawn(
              h.io,
              [&, i]() -> asio::awaitable<void> {
                const std::string body = RandomBytes(1 << 20, static_cast<unsigned>(i + 1));
                const std::string back = co_await EchoThrough(port, body);
                if (back.size() == body.size() &&
                    tunnelkit::test::Sha256Hex(back) == tunnelkit::test::Sha256Hex(body)) {
                  ++good;
                } else {
                  ADD_FAILURE() << "connection " << i << ": " << back.size() << " bytes back";
                }
                ++finished;
              },
              asio::detached);
        }
        EXPECT_TRUE(
            co_await WaitFor([&] { return finished == kConnections; }, std::chrono::seconds(60)));
        EXPECT_EQ(good, kConnections);
        const auto stats = h.server->stats();
        EXPECT_EQ(stats.shared_data_sockets, 1u);
        EXPECT_EQ(stats.data_sockets, 0u);
        EXPECT_EQ(stats.shared_streams, static_cast<std::uint64_t>(kConnections));
        EXPECT_TRUE(h.log.Has("shared data channels")) << h.log.str();
      },
      std::chrono::seconds(90));
}

// Half-close both ways: the client finishes writing, still reads the echo, and sees the
// origin's own half-close; then the same connection is gone on both sides.
TEST(ZlayerSharedChannels, HalfCloseCrossesTheSharedSocket) {
  Harness h;
  ASSERT_TRUE(h.StartServer(true));
  ASSERT_TRUE(h.StartAgent(DataChannels::kShared));
  h.Run(
      [&]() -> asio::awaitable<void> {
        const int port = co_await h.PublicPort();
        if (port == 0) co_return;
        boost::system::error_code ec;
        tcp::socket s = co_await ConnectPublic(port, ec);
        EXPECT_FALSE(ec) << ec.message();
        co_await asio::async_write(s, asio::buffer(std::string("first half")),
                                   asio::redirect_error(asio::use_awaitable, ec));
        // Let it cross before the half-close, so the echo is read after our FIN went out.
        co_await Sleep(std::chrono::milliseconds(100));
        s.shutdown(tcp::socket::shutdown_send, ec);
        std::string back;
        std::array<char, 256> buf;
        for (;;) {
          const auto n = co_await s.async_read_some(asio::buffer(buf),
                                                    asio::redirect_error(asio::use_awaitable, ec));
          back.append(buf.data(), n);
          if (ec) break;
        }
        EXPECT_EQ(ec, asio::error::eof) << ec.message();
        EXPECT_EQ(back, "first half");
        EXPECT_EQ(h.server->stats().shared_data_sockets, 1u);
      },
      std::chrono::seconds(30));
}

// A tunnelkit agent by hand: control session over libwebsockets (ws), one registered service,
// and a shared data socket it drives itself with a MuxSession.
struct HandAgent {
  Harness& h;
  transport::WsLoop client;
  std::shared_ptr<transport::WsConnection> control;
  codec::Uuid tunnel_id;
  codec::ServerHello hello;
  std::size_t auth_ok_size = 0;
  int public_port = 0;

  explicit HandAgent(Harness& harness) : h(harness), client(harness.io) {
    std::string error;
    EXPECT_TRUE(client.Start(std::nullopt, nullptr, transport::WsClientOptions{}, error)) << error;
  }

  asio::awaitable<bool> Auth(std::string trailer) {
    std::string error;
    control = co_await client.Connect(h.Url(), error);
    EXPECT_TRUE(control) << error;
    if (!control) co_return false;
    const auto auth = codec::Encode(codec::Auth{"hand-token", {}, std::move(trailer)}).bytes;
    co_await control->Send(auth);
    auto reply = co_await control->Receive();
    if (!reply) co_return false;
    auth_ok_size = reply->size();
    auto decoded = codec::Decode(*reply);
    if (!decoded.ok || !std::holds_alternative<codec::AuthOk>(decoded.message)) co_return false;
    const auto& ok = std::get<codec::AuthOk>(decoded.message);
    tunnel_id = ok.tunnel_id;
    const auto server_hello = codec::DecodeServerHello(ok.trailer);
    if (server_hello) hello = *server_hello;
    co_return server_hello.has_value();
  }

  asio::awaitable<bool> Register() {
    const auto port = co_await test::RegisterService(control);
    if (!port) co_return false;
    public_port = *port;
    co_return true;
  }

  // Connects a public client and returns the connection id of the server's Connect.
  asio::awaitable<std::optional<codec::Uuid>> PublicConnection(tcp::socket& client_socket) {
    boost::system::error_code ec;
    co_await client_socket.async_connect(
        tcp::endpoint(asio::ip::make_address("127.0.0.1"), public_port),
        asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return std::nullopt;
    for (;;) {
      auto message = co_await control->Receive();
      if (!message) co_return std::nullopt;
      auto decoded = codec::Decode(*message);
      if (!decoded.ok) co_return std::nullopt;
      if (const auto* connect = std::get_if<codec::Connect>(&decoded.message)) {
        co_return connect->connection_id;
      }
    }
  }

  asio::awaitable<std::shared_ptr<transport::DataSocket>> DialShared() {
    std::string error;
    auto data = co_await transport::DialDataSocket(h.io.get_executor(), h.Url(), nullptr,
                                                   std::chrono::seconds(5),
                                                   transport::DataKind::kShared, error);
    EXPECT_TRUE(data) << error;
    if (!data) co_return nullptr;
    const auto attach = codec::Encode(codec::DataAttach{tunnel_id, {}, hello.data_secret});
    if (co_await data->WriteMessage(asio::buffer(attach.bytes))) co_return nullptr;
    co_return data;
  }
};

std::shared_ptr<mux::MuxSession> ClientSession(std::shared_ptr<transport::DataSocket> data) {
  auto session = mux::MuxSession::Create(
      std::make_unique<transport::DataChannel>(data, "test shared"),
      std::make_unique<codec::ZlayerMuxCodec>(),
      transport::SharedChannelConfig(mux::IdParity::kOdd, 64, "test shared"));
  session->Start();
  return session;
}

// A stream naming no pending connection is reset with a reason and logged; the same shared
// socket goes on carrying a stream that names a real one. A malformed frame on another shared
// socket closes that socket only (logged), and the server keeps serving.
TEST(ZlayerSharedChannels, BadStreamIdsAndMalformedFramesAreContained) {
  Harness h;
  ASSERT_TRUE(h.StartServer(false));
  HandAgent agent(h);
  h.Run(
      [&]() -> asio::awaitable<void> {
        const std::string offer =
            codec::EncodeAgentHello({codec::kExtensionVersion, codec::kFeatureSharedDataChannels});
        EXPECT_TRUE(co_await agent.Auth(offer));
        EXPECT_EQ(agent.hello.features, codec::kFeatureSharedDataChannels);
        EXPECT_EQ(agent.auth_ok_size, 21u + 4 + 1 + 16 + 1);
        EXPECT_TRUE(co_await agent.Register());
        tcp::socket public_client(h.io);
        const auto connection = co_await agent.PublicConnection(public_client);
        EXPECT_TRUE(connection);
        if (!connection) co_return;

        auto data = co_await agent.DialShared();
        if (!data) co_return;
        auto session = ClientSession(data);
        boost::system::error_code ec;
        // Unknown id, then a metadata that is no id at all.
        const auto unknown = codec::Uuid::Parse("00000000-0000-4000-8000-000000000001")->bytes;
        auto bad = session->Open(mux::Priority::kNormal, unknown, ec);
        EXPECT_TRUE(bad) << ec.message();
        if (!bad) co_return;
        std::array<char, 64> buf;
        auto r = co_await bad->ReadSome(asio::buffer(buf));
        EXPECT_EQ(r.ec, asio::error::connection_reset) << r.ec.message();
        EXPECT_NE(bad->error_reason().find("unknown or expired connection"), std::string::npos)
            << bad->error_reason();
        const std::array<std::uint8_t, 3> short_id{1, 2, 3};
        auto malformed_id = session->Open(mux::Priority::kNormal, short_id, ec);
        r = co_await malformed_id->ReadSome(asio::buffer(buf));
        EXPECT_EQ(r.ec, asio::error::connection_reset);
        EXPECT_TRUE(h.log.Has("refused: unknown or expired connection")) << h.log.str();
        EXPECT_TRUE(h.log.Has("is not a connection id")) << h.log.str();

        // The real one works, both ways, on the same session.
        auto good = session->Open(mux::Priority::kNormal, connection->bytes, ec);
        EXPECT_TRUE(good) << ec.message();
        if (!good) co_return;
        const std::string to_client = "to the public client";
        EXPECT_FALSE((co_await good->Write(asio::buffer(to_client))).ec);
        std::string got(to_client.size(), '\0');
        co_await asio::async_read(public_client, asio::buffer(got),
                                  asio::redirect_error(asio::use_awaitable, ec));
        EXPECT_EQ(got, to_client) << ec.message();
        const std::string to_agent = "to the agent";
        co_await asio::async_write(public_client, asio::buffer(to_agent),
                                   asio::redirect_error(asio::use_awaitable, ec));
        std::string back;
        while (back.size() < to_agent.size()) {
          r = co_await good->ReadSome(asio::buffer(buf));
          if (r.ec) break;
          back.append(buf.data(), r.bytes);
        }
        EXPECT_EQ(back, to_agent);
        // The same connection id again: no longer pending.
        auto duplicate = session->Open(mux::Priority::kNormal, connection->bytes, ec);
        r = co_await duplicate->ReadSome(asio::buffer(buf));
        EXPECT_EQ(r.ec, asio::error::connection_reset);

        // A second shared socket sends garbage: closed with a logged reason.
        auto broken = co_await agent.DialShared();
        if (!broken) co_return;
        const std::array<std::uint8_t, 5> garbage{0x09, 0, 0, 0, 1};
        EXPECT_FALSE(co_await broken->WriteMessage(asio::buffer(garbage)));
        Deadline deadline(h.io.get_executor());
        deadline.Arm(std::chrono::seconds(5), [broken] { broken->Close(); });
        const auto closed = co_await broken->ReadSome(asio::buffer(buf));
        EXPECT_TRUE(closed.ec);
        EXPECT_FALSE(deadline.fired()) << "the server did not close the socket";
        EXPECT_TRUE(
            co_await WaitFor([&] { return h.log.Has("codec error: mux frame: unknown type 9"); },
                             std::chrono::seconds(5)))
            << h.log.str();

        // The first session and the control channel live on.
        co_await asio::async_write(public_client, asio::buffer(std::string("more")),
                                   asio::redirect_error(asio::use_awaitable, ec));
        r = co_await good->ReadSome(asio::buffer(buf));
        EXPECT_EQ(std::string(buf.data(), r.bytes), "more") << r.ec.message();
        EXPECT_FALSE(agent.control->closed());
        EXPECT_EQ(h.server->stats().shared_data_sockets, 2u);
        EXPECT_EQ(h.server->stats().tunnels, 1u);
        session->Close("test over");
        agent.control->Close();
        agent.client.Stop();
      },
      std::chrono::seconds(30));
}

// The shared socket breaks: its connections end (public sockets closed), the link and its
// control connection stay up, and the next connection opens a new shared socket.
TEST(ZlayerSharedChannels, ABrokenSharedSocketFailsItsConnectionsOnly) {
  Harness h;
  ASSERT_TRUE(h.StartServer(true));
  ASSERT_TRUE(h.StartAgent(DataChannels::kShared));
  h.Run(
      [&]() -> asio::awaitable<void> {
        const int port = co_await h.PublicPort();
        if (port == 0) co_return;
        boost::system::error_code ec;
        tcp::socket first = co_await ConnectPublic(port, ec);
        const std::string ping = "ping";
        co_await asio::async_write(first, asio::buffer(ping),
                                   asio::redirect_error(asio::use_awaitable, ec));
        std::string back(ping.size(), '\0');
        co_await asio::async_read(first, asio::buffer(back),
                                  asio::redirect_error(asio::use_awaitable, ec));
        EXPECT_EQ(back, ping);
        const auto reconnects = h.agent->supervisor().Status().reconnects;

        EXPECT_EQ(h.server->CloseDataSockets(), 1u);
        std::array<char, 16> buf;
        Deadline deadline(h.io.get_executor());
        deadline.Arm(std::chrono::seconds(5), [&first] {
          boost::system::error_code ignored;
          first.close(ignored);
        });
        co_await first.async_read_some(asio::buffer(buf),
                                       asio::redirect_error(asio::use_awaitable, ec));
        EXPECT_TRUE(ec);
        EXPECT_FALSE(deadline.fired()) << "the public connection stayed open";
        EXPECT_TRUE(co_await WaitFor(
            [&] { return h.log.Has("zlayer shared data to") && h.log.Has("session closed"); },
            std::chrono::seconds(5)))
            << h.log.str();

        const std::string again = RandomBytes(256 * 1024, 7);
        const std::string echoed = co_await EchoThrough(port, again);
        EXPECT_EQ(tunnelkit::test::Sha256Hex(echoed), tunnelkit::test::Sha256Hex(again));
        EXPECT_EQ(h.server->stats().shared_data_sockets, 2u);
        EXPECT_EQ(h.server->stats().tunnels, 1u);
        EXPECT_EQ(h.agent->supervisor().Status().reconnects, reconnects);
        EXPECT_EQ(h.agent->supervisor().state(), session::LinkState::kConnected);
      },
      std::chrono::seconds(30));
}

// A full shared socket (its max_streams held) makes the next connection open another; all of
// them keep working.
TEST(ZlayerSharedChannels, AFullSharedSocketOpensAnother) {
  Harness h;
  ASSERT_TRUE(h.StartServer(true));
  ASSERT_TRUE(h.StartAgent(DataChannels::kShared, /*max_streams=*/2));
  h.Run(
      [&]() -> asio::awaitable<void> {
        const int port = co_await h.PublicPort();
        if (port == 0) co_return;
        std::vector<std::unique_ptr<tcp::socket>> held;
        for (int i = 0; i < 5; ++i) {
          held.push_back(std::make_unique<tcp::socket>(h.io));
          boost::system::error_code ec;
          co_await held.back()->async_connect(
              tcp::endpoint(asio::ip::make_address("127.0.0.1"), port),
              asio::redirect_error(asio::use_awaitable, ec));
          const std::string line = "held " + std::to_string(i);
          co_await asio::async_write(*held.back(), asio::buffer(line),
                                     asio::redirect_error(asio::use_awaitable, ec));
          std::string back(line.size(), '\0');
          co_await asio::async_read(*held.back(), asio::buffer(back),
                                    asio::redirect_error(asio::use_awaitable, ec));
          EXPECT_EQ(back, line) << ec.message();
        }
        // Five held connections, two per socket.
        EXPECT_EQ(h.server->stats().shared_data_sockets, 3u);
        EXPECT_EQ(h.server->stats().shared_streams, 5u);
        // The first still works.
        boost::system::error_code ec;
        co_await asio::async_write(*held.front(), asio::buffer(std::string("again")),
                                   asio::redirect_error(asio::use_awaitable, ec));
        std::string back(5, '\0');
        co_await asio::async_read(*held.front(), asio::buffer(back),
                                  asio::redirect_error(asio::use_awaitable, ec));
        EXPECT_EQ(back, "again");
      },
      std::chrono::seconds(30));
}

// Echoes `count` connections and returns how many came back whole.
asio::awaitable<int> EchoSome(int port, int count) {
  int good = 0;
  for (int i = 0; i < count; ++i) {
    const std::string body = RandomBytes(64 * 1024, static_cast<unsigned>(100 + i));
    if (co_await EchoThrough(port, body) == body) ++good;
  }
  co_return good;
}

// A server that does not share (or predates shared channels) and a new agent asking for them:
// per-connection data sockets.
TEST(ZlayerSharedChannels, NewAgentWithAnOldServerFallsBackToPerConnectionSockets) {
  Harness h;
  ASSERT_TRUE(h.StartServer(true, /*server_shares=*/false));
  ASSERT_TRUE(h.StartAgent(DataChannels::kShared));
  h.Run(
      [&]() -> asio::awaitable<void> {
        const int port = co_await h.PublicPort();
        if (port == 0) co_return;
        EXPECT_EQ(co_await EchoSome(port, 3), 3);
        EXPECT_EQ(h.server->stats().data_sockets, 3u);
        EXPECT_EQ(h.server->stats().shared_data_sockets, 0u);
        EXPECT_TRUE(h.log.Has("the server does not share data WebSockets")) << h.log.str();
      },
      std::chrono::seconds(30));
}

// An agent that does not offer (per-connection, or an older one) with a new server.
TEST(ZlayerSharedChannels, OldAgentWithANewServerGetsPerConnectionSockets) {
  Harness h;
  ASSERT_TRUE(h.StartServer(true));
  ASSERT_TRUE(h.StartAgent(DataChannels::kPerConnection));
  h.Run(
      [&]() -> asio::awaitable<void> {
        const int port = co_await h.PublicPort();
        if (port == 0) co_return;
        EXPECT_EQ(co_await EchoSome(port, 3), 3);
        EXPECT_EQ(h.server->stats().data_sockets, 3u);
        EXPECT_EQ(h.server->stats().shared_data_sockets, 0u);
      },
      std::chrono::seconds(30));
}

// Byte level: a v2 agent without features gets today's exact AuthOk (42 bytes: 21 upstream +
// "TKDP" 02 + secret), no feature byte; and auto on plain ws stays per connection.
TEST(ZlayerSharedChannels, OldTrailersGetOldRepliesAndAutoOnWsStaysPerConnection) {
  Harness h;
  ASSERT_TRUE(h.StartServer(false));
  HandAgent hand(h);
  ASSERT_TRUE(h.StartAgent(DataChannels::kAuto));
  h.Run(
      [&]() -> asio::awaitable<void> {
        EXPECT_TRUE(co_await hand.Auth(std::string("TKDP\x02", 5)));
        EXPECT_EQ(hand.auth_ok_size, 21u + 4 + 1 + 16);
        EXPECT_EQ(hand.hello.features, 0);
        // A shared socket for a tunnel that did not negotiate it is refused.
        auto data = co_await hand.DialShared();
        if (data) {
          std::array<char, 16> buf;
          Deadline deadline(h.io.get_executor());
          deadline.Arm(std::chrono::seconds(5), [data] { data->Close(); });
          EXPECT_TRUE((co_await data->ReadSome(asio::buffer(buf))).ec);
          EXPECT_FALSE(deadline.fired());
          EXPECT_TRUE(h.log.Has("which did not negotiate shared data channels")) << h.log.str();
        }
        hand.control->Close();
        hand.client.Stop();

        const int port = co_await h.PublicPort();
        if (port == 0) co_return;
        EXPECT_EQ(co_await EchoSome(port, 2), 2);
        EXPECT_EQ(h.server->stats().data_sockets, 2u);
        EXPECT_EQ(h.server->stats().shared_data_sockets, 0u);
      },
      std::chrono::seconds(30));
}

TEST(ZlayerSharedChannels, DataChannelsValues) {
  EXPECT_EQ(ParseDataChannels("auto"), DataChannels::kAuto);
  EXPECT_EQ(ParseDataChannels("shared"), DataChannels::kShared);
  EXPECT_EQ(ParseDataChannels("per-connection"), DataChannels::kPerConnection);
  EXPECT_FALSE(ParseDataChannels("Shared"));
  EXPECT_FALSE(ParseDataChannels(""));
}

}  // namespace
}  // namespace tunnelkit::zlayer
