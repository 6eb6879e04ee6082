// What anonymous clients may hold of a zlayer server (issue 14, defects 3, 4, 6, 8): small
// messages and a cap on connections before Auth, the public connection caps, the per-source
// budget for wrong tokens, and the per-token port cap. Real server and agent on loopback.
#include <gtest/gtest.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>
#include <filesystem>
#include <sstream>
#include <thread>

#include "agent/tunnel_agent.hpp"
#include "codec/codec.hpp"
#include "codec/extension.hpp"
#include "fd_exhaustion.hpp"
#include "process.hpp"
#include "register_service.hpp"
#include "server/tunnel_server.hpp"
#include "tcp_echo.hpp"
#include "transport/data_link.hpp"
#include "wait.hpp"

namespace tunnelkit::zlayer {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;
using test::Sleep;
using test::WaitFor;

struct Limits {
  asio::io_context io;
  std::ostringstream text;
  std::shared_ptr<spdlog::logger> logger = std::make_shared<spdlog::logger>(
      "zlayer-limits", std::make_shared<spdlog::sinks::ostream_sink_mt>(text));
  std::unique_ptr<TunnelServer> server;

  bool Start(ServerOptions options) {
    const int low = tunnelkit::test::FreeTcpPort();
    options.ws.host = "127.0.0.1";
    options.ws.port = 0;
    options.ports = PortPool(static_cast<std::uint16_t>(low), static_cast<std::uint16_t>(low + 7));
    options.tokens.Add({HashToken("good-token"), std::nullopt});
    server = std::make_unique<TunnelServer>(io, std::move(options), logger);
    std::string error;
    const bool ok = server->Start(error);
    EXPECT_TRUE(ok) << error;
    return ok;
  }
  std::string Log() {
    logger->flush();
    return text.str();
  }
  AgentOptions Agent(std::vector<std::string> services) {
    AgentOptions options;
    options.server = transport::WsUrl{false, "127.0.0.1", server->listen_port(), "/tunnel/v1"};
    options.token = "good-token";
    std::string error;
    for (const auto& s : services) options.services.push_back(*ServiceSpec::Parse(s, error));
    return options;
  }
  void Run(std::function<asio::awaitable<void>()> body, std::chrono::seconds limit = 30s) {
    bool done = false;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          co_await body();
          done = true;
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

// True when the server closes `socket` within `limit` (bytes before the close are ignored).
asio::awaitable<bool> ClosedWithin(tcp::socket& socket, std::chrono::milliseconds limit) {
  asio::steady_timer timer(socket.get_executor(), limit);
  bool expired = false;
  timer.async_wait([&](boost::system::error_code ec) {
    if (!ec) {
      expired = true;
      socket.cancel();
    }
  });
  char sink[256];
  boost::system::error_code ec;
  while (!ec) {
    co_await socket.async_read_some(asio::buffer(sink),
                                    asio::redirect_error(asio::use_awaitable, ec));
  }
  timer.cancel();
  co_return !expired;
}

// (Named arguments and results around co_await: g++ 12 mishandles temporaries there.)
asio::awaitable<std::string> Echo(tcp::socket& socket, const std::string& text) {
  boost::system::error_code ec;
  co_await asio::async_write(socket, asio::buffer(text),
                             asio::redirect_error(asio::use_awaitable, ec));
  std::string reply(text.size(), '\0');
  asio::steady_timer timer(socket.get_executor(), 5s);
  timer.async_wait([&](boost::system::error_code e) {
    if (!e) socket.cancel();
  });
  co_await asio::async_read(socket, asio::buffer(reply),
                            asio::redirect_error(asio::use_awaitable, ec));
  timer.cancel();
  co_return ec ? std::string() : reply;
}

// Defect 8: one token may not take every port of the range.
TEST(ZlayerServerLimits, PortsPerTokenAreCapped) {
  Limits h;
  ServerOptions options;
  options.max_ports_per_token = 2;
  ASSERT_TRUE(h.Start(options));
  TunnelAgent agent(h.io, h.Agent({"a:1", "b:1", "c:1"}), h.logger);
  std::string error;
  ASSERT_TRUE(agent.Start(error));
  asio::co_spawn(h.io, agent.Run(), asio::detached);
  h.Run([&]() -> asio::awaitable<void> {
    EXPECT_TRUE(co_await WaitFor([&] { return agent.registered().size() == 3; }, 10s));
    if (agent.registered().size() == 3) {
      EXPECT_TRUE(agent.registered()[0].ok);
      EXPECT_TRUE(agent.registered()[1].ok);
      EXPECT_FALSE(agent.registered()[2].ok);
      EXPECT_NE(agent.registered()[2].error.find("max_ports_per_token"), std::string::npos)
          << agent.registered()[2].error;
    }
    EXPECT_EQ(h.server->stats().services, 2u);
    agent.Stop();
  });
}

// Defect 6: a source that keeps sending wrong tokens has its connections closed at accept
// once its budget is spent; the failures are logged in aggregate.
TEST(ZlayerServerLimits, WrongTokensAreRateLimitedPerSource) {
  Limits h;
  ServerOptions options;
  options.limits.auth_failures = {0.1, 2, 64};
  ASSERT_TRUE(h.Start(options));
  transport::WsLoop client(h.io);
  std::string error;
  ASSERT_TRUE(client.Start(std::nullopt, nullptr, transport::WsClientOptions{}, error));
  h.Run([&]() -> asio::awaitable<void> {
    const transport::WsUrl url{false, "127.0.0.1", h.server->listen_port(), "/tunnel/v1"};
    for (int i = 0; i < 2; ++i) {
      auto conn = co_await client.Connect(url, error);
      EXPECT_TRUE(conn) << error;
      if (!conn) co_return;
      const auto bad_auth = codec::Encode(codec::Auth{"bad-token", {}, {}}).bytes;
      co_await conn->Send(bad_auth);
      auto reply = co_await conn->Receive();
      EXPECT_TRUE(reply && codec::Decode(*reply).ok &&
                  std::holds_alternative<codec::AuthFail>(codec::Decode(*reply).message));
    }
    // The third connection from this source is closed before its upgrade.
    tcp::socket raw(h.io);
    boost::system::error_code ec;
    const tcp::endpoint door{asio::ip::make_address("127.0.0.1"),
                             static_cast<unsigned short>(h.server->listen_port())};
    co_await raw.async_connect(door, asio::redirect_error(asio::use_awaitable, ec));
    EXPECT_FALSE(ec);
    EXPECT_TRUE(co_await ClosedWithin(raw, 2s)) << "a source out of failures was let in";
    EXPECT_EQ(h.server->stats().auth_failures, 2u);
    EXPECT_EQ(h.server->stats().auth_refusals, 1u);
    const std::string log = h.Log();
    EXPECT_EQ(tunnelkit::test::CountLines(log, "refused: Authentication error"), 1u) << log;
    EXPECT_EQ(tunnelkit::test::CountLines(log, "too many authentication failures"), 1u) << log;
    client.Stop();
  });
}

// Defect 3: before Auth a control connection may send only a small message (an Auth is well
// under 8 KiB); a 100 KiB one closes it without an answer (it was buffered and answered).
TEST(ZlayerServerLimits, MessagesBeforeAuthAreSmall) {
  Limits h;
  ASSERT_TRUE(h.Start(ServerOptions{}));
  transport::WsLoop client(h.io);
  std::string error;
  ASSERT_TRUE(client.Start(std::nullopt, nullptr, transport::WsClientOptions{}, error));
  h.Run([&]() -> asio::awaitable<void> {
    const transport::WsUrl url{false, "127.0.0.1", h.server->listen_port(), "/tunnel/v1"};
    auto conn = co_await client.Connect(url, error);
    EXPECT_TRUE(conn) << error;
    if (!conn) co_return;
    const std::vector<std::uint8_t> big(100 * 1024, 0x01);
    co_await conn->Send(big);
    EXPECT_FALSE(co_await conn->Receive()) << "a 100 KiB pre-auth message was read and answered";
    // An Auth still works, and after it the large limit applies again.
    auto good = co_await client.Connect(url, error);
    EXPECT_TRUE(good) << error;
    if (!good) co_return;
    const auto auth = codec::Encode(codec::Auth{"good-token", {}, {}}).bytes;
    co_await good->Send(auth);
    auto reply = co_await good->Receive();
    EXPECT_TRUE(reply && codec::Decode(*reply).ok &&
                std::holds_alternative<codec::AuthOk>(codec::Decode(*reply).message));
    client.Stop();
  });
}

// An agent by hand on the control channel: Auth with the v2 trailer, one registered service.
struct HandLink {
  transport::WsLoop client;
  std::shared_ptr<transport::WsConnection> control;
  codec::Uuid tunnel_id;
  codec::ServerHello hello;
  std::uint16_t public_port = 0;

  explicit HandLink(Limits& h) : client(h.io) {
    std::string error;
    EXPECT_TRUE(client.Start(std::nullopt, nullptr, transport::WsClientOptions{}, error)) << error;
  }
  asio::awaitable<bool> Up(Limits& h) {
    std::string error;
    const transport::WsUrl url{false, "127.0.0.1", h.server->listen_port(), "/tunnel/v1"};
    control = co_await client.Connect(url, error);
    EXPECT_TRUE(control) << error;
    if (!control) co_return false;
    const std::string trailer = codec::EncodeAgentHello({codec::kExtensionVersion, 0});
    const auto auth = codec::Encode(codec::Auth{"good-token", {}, trailer}).bytes;
    co_await control->Send(auth);
    auto reply = co_await control->Receive();
    if (!reply) co_return false;
    auto decoded = codec::Decode(*reply);
    if (!decoded.ok || !std::holds_alternative<codec::AuthOk>(decoded.message)) co_return false;
    tunnel_id = std::get<codec::AuthOk>(decoded.message).tunnel_id;
    const auto server_hello =
        codec::DecodeServerHello(std::get<codec::AuthOk>(decoded.message).trailer);
    if (!server_hello) co_return false;
    hello = *server_hello;
    const auto port = co_await test::RegisterService(control);
    if (!port) co_return false;
    public_port = *port;
    co_return true;
  }
  std::string Credential(bool right_secret = true) const {
    transport::DataLinkCredential credential{tunnel_id, hello.data_secret};
    if (!right_secret) credential.secret[0] ^= 0xff;
    return transport::FormatDataLinkCredential(credential);
  }
};

// Watches a data socket that never sends DataAttach: `closed` once the server ends it.
struct HeldUpgrade {
  std::shared_ptr<transport::DataSocket> data;
  std::shared_ptr<bool> closed = std::make_shared<bool>(false);
};

asio::awaitable<HeldUpgrade> DialAndHold(Limits& h, const std::string& credential) {
  std::string error;
  const transport::WsUrl url{false, "127.0.0.1", h.server->listen_port(), "/tunnel/v1"};
  HeldUpgrade held;
  held.data =
      co_await transport::DialDataSocket(h.io.get_executor(), url, nullptr, 5s,
                                         transport::DataKind::kPerConnection, error, credential);
  if (!held.data) {
    *held.closed = true;
    co_return held;
  }
  asio::co_spawn(
      h.io,
      [data = held.data, closed = held.closed]() -> asio::awaitable<void> {
        std::array<char, 64> sink;
        co_await data->ReadSome(asio::buffer(sink));
        *closed = true;
      },
      asio::detached);
  co_return held;
}

// Issue 14: an agent opens one data WebSocket per public connection, all from its one address,
// and each used to count against that address's connections before authentication until its
// DataAttach: a burst of public connections had legitimate ones reset. A data upgrade that
// names its link (tunnel id and data secret) leaves the source's budget once its head is read
// and takes a slot of its link's own cap instead; beyond that cap, or without a credential, it
// is counted by source as before, and a wrong credential is closed as a failed authentication.
TEST(ZlayerServerLimits, DataUpgradesNamingTheirLinkAreAdmittedByTheLink) {
  Limits h;
  ServerOptions options;
  options.limits.unauthenticated = {16, 2};
  options.max_data_upgrades_per_link = 3;
  ASSERT_TRUE(h.Start(options));
  HandLink link(h);
  h.Run([&]() -> asio::awaitable<void> {
    EXPECT_TRUE(co_await link.Up(h));
    std::vector<HeldUpgrade> held;
    // Three by the link's cap, then two by the source's (2 per source): all held open.
    // (Named arguments and results around co_await: g++ 12.)
    const std::string named = link.Credential();
    const std::string wrong_secret = link.Credential(false);
    const std::string none;
    for (int i = 0; i < 5; ++i) {
      HeldUpgrade one = co_await DialAndHold(h, named);
      held.push_back(std::move(one));
    }
    co_await Sleep(500ms);
    for (std::size_t i = 0; i < held.size(); ++i) {
      EXPECT_FALSE(*held[i].closed) << "named data upgrade " << i << " was refused";
    }
    // Link and source both full: the next one is closed, named or not.
    HeldUpgrade over = co_await DialAndHold(h, named);
    HeldUpgrade unnamed = co_await DialAndHold(h, none);
    EXPECT_TRUE(co_await WaitFor([&] { return *over.closed && *unnamed.closed; }, 3s))
        << "the caps did not apply: named " << *over.closed << ", unnamed " << *unnamed.closed;
    // A wrong secret is refused at once and counted against its source.
    const auto failures = h.server->stats().auth_failures;
    HeldUpgrade wrong = co_await DialAndHold(h, wrong_secret);
    EXPECT_TRUE(co_await WaitFor([&] { return *wrong.closed; }, 3s)) << "wrong secret admitted";
    EXPECT_EQ(h.server->stats().auth_failures, failures + 1);
    EXPECT_NE(h.Log().find("with a wrong secret"), std::string::npos) << h.Log();
    // A slot of the link's cap is free again once its upgrade is gone.
    held[0].data->Close();
    co_await Sleep(200ms);
    HeldUpgrade again = co_await DialAndHold(h, named);
    co_await Sleep(300ms);
    EXPECT_FALSE(*again.closed) << "the link's slot was not given back";
    for (auto* one : {&over, &unnamed, &wrong, &again}) {
      if (one->data) one->data->Close();
    }
    for (auto& one : held) one.data->Close();
    link.client.Stop();
  });
}

// Issue 14 (descriptor exhaustion): a public connection waiting for the agent's data socket
// used to hold its descriptor and slot for the whole pending timeout (40 s) after its client
// left; a flood of such connections kept the server out of descriptors long after it ended.
// Now the server drops it as soon as the client closes, and keeps one that sent its request.
TEST(ZlayerServerLimits, APendingConnectionWhoseClientLeftIsDroppedAtOnce) {
  Limits h;
  ASSERT_TRUE(h.Start(ServerOptions{}));
  HandLink link(h);
  h.Run([&]() -> asio::awaitable<void> {
    EXPECT_TRUE(co_await link.Up(h));
    const tcp::endpoint port{asio::ip::make_address("127.0.0.1"), link.public_port};
    tcp::socket leaves(h.io);
    tcp::socket stays(h.io);
    boost::system::error_code ec;
    co_await leaves.async_connect(port, asio::redirect_error(asio::use_awaitable, ec));
    co_await stays.async_connect(port, asio::redirect_error(asio::use_awaitable, ec));
    const std::string request = "GET / HTTP/1.1\r\n\r\n";
    co_await asio::async_write(stays, asio::buffer(request),
                               asio::redirect_error(asio::use_awaitable, ec));
    EXPECT_TRUE(co_await WaitFor([&] { return h.server->stats().public_connections == 2; }, 3s));
    leaves.close();
    EXPECT_TRUE(co_await WaitFor([&] { return h.server->stats().public_connections == 1; }, 3s))
        << "a pending connection whose client left is still held";
    co_await Sleep(300ms);
    EXPECT_EQ(h.server->stats().public_connections, 1u) << "a waiting client was dropped";
    stays.close();
    link.client.Stop();
  });
}

// Issue 14: a frame header that announces more than a connection may send before Auth (here
// 1 TiB, with 4 KiB of it) is refused with its first bytes, not after the 10 s auth timeout.
TEST(ZlayerServerLimits, AnOversizedFrameBeforeAuthIsRefusedAtOnce) {
  Limits h;
  ASSERT_TRUE(h.Start(ServerOptions{}));
  h.Run([&]() -> asio::awaitable<void> {
    tcp::socket raw(h.io);
    boost::system::error_code ec;
    co_await raw.async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"),
                                             static_cast<unsigned short>(h.server->listen_port())),
                               asio::redirect_error(asio::use_awaitable, ec));
    const std::string upgrade =
        "GET /tunnel/v1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n";
    co_await asio::async_write(raw, asio::buffer(upgrade),
                               asio::redirect_error(asio::use_awaitable, ec));
    asio::streambuf response;
    co_await asio::async_read_until(raw, response, "\r\n\r\n",
                                    asio::redirect_error(asio::use_awaitable, ec));
    EXPECT_FALSE(ec) << ec.message();
    // FIN + binary, masked, 64-bit length 2^40, mask key 0; then 4 KiB of its payload.
    std::string frame = {'\x82', '\xff', 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    frame += std::string(4096, 'x');
    co_await asio::async_write(raw, asio::buffer(frame),
                               asio::redirect_error(asio::use_awaitable, ec));
    EXPECT_TRUE(co_await ClosedWithin(raw, 3s)) << "a 1 TiB frame waited for the auth timeout";
  });
}

// Defect 3: connections that have not authenticated are capped: idle ones over the cap are
// closed at once (they once waited for the auth timeout, each holding buffers).
TEST(ZlayerServerLimits, UnauthenticatedConnectionsAreCapped) {
  Limits h;
  ServerOptions options;
  options.limits.unauthenticated = {2, 2};
  ASSERT_TRUE(h.Start(options));
  transport::WsLoop client(h.io);
  std::string error;
  ASSERT_TRUE(client.Start(std::nullopt, nullptr, transport::WsClientOptions{}, error));
  h.Run([&]() -> asio::awaitable<void> {
    const transport::WsUrl url{false, "127.0.0.1", h.server->listen_port(), "/tunnel/v1"};
    auto a = co_await client.Connect(url, error);
    auto b = co_await client.Connect(url, error);
    EXPECT_TRUE(a && b) << error;
    if (!a || !b) co_return;
    auto c = co_await client.Connect(url, error);
    if (c) {
      const bool closed = co_await WaitFor([&] { return c->closed(); }, 2s);
      EXPECT_TRUE(closed) << "cap not applied";
    }
    EXPECT_FALSE(a->closed());
    // Idle raw TCP connections before their upgrade count too (at the front door).
    tcp::socket r1(h.io);
    tcp::socket r2(h.io);
    tcp::socket r3(h.io);
    const tcp::endpoint door{asio::ip::make_address("127.0.0.1"),
                             static_cast<unsigned short>(h.server->listen_port())};
    boost::system::error_code ec;
    co_await r1.async_connect(door, asio::redirect_error(asio::use_awaitable, ec));
    co_await r2.async_connect(door, asio::redirect_error(asio::use_awaitable, ec));
    co_await Sleep(200ms);
    co_await r3.async_connect(door, asio::redirect_error(asio::use_awaitable, ec));
    EXPECT_TRUE(co_await ClosedWithin(r3, 2s)) << "front door cap not applied";
    // Authenticating frees a slot.
    const auto auth = codec::Encode(codec::Auth{"good-token", {}, {}}).bytes;
    co_await a->Send(auth);
    auto reply = co_await a->Receive();
    EXPECT_TRUE(reply && codec::Decode(*reply).ok &&
                std::holds_alternative<codec::AuthOk>(codec::Decode(*reply).message));
    client.Stop();
  });
}

// Defect 4: public connections to the ports are capped (here 2): the third is closed at once
// while the first two keep working.
TEST(ZlayerServerLimits, PublicConnectionsAreCapped) {
  Limits h;
  ServerOptions options;
  options.limits.public_connections = {2, 2};
  ASSERT_TRUE(h.Start(options));
  tunnelkit::test::TcpEcho echo(h.io);
  TunnelAgent agent(h.io, h.Agent({"echo:" + std::to_string(echo.port())}), h.logger);
  std::string error;
  ASSERT_TRUE(agent.Start(error));
  asio::co_spawn(h.io, agent.Run(), asio::detached);
  h.Run([&]() -> asio::awaitable<void> {
    EXPECT_TRUE(co_await WaitFor(
        [&] { return !agent.registered().empty() && agent.registered()[0].ok; }, 10s));
    if (agent.registered().empty()) co_return;
    const tcp::endpoint port{asio::ip::make_address("127.0.0.1"),
                             agent.registered()[0].public_port};
    tcp::socket one(h.io);
    tcp::socket two(h.io);
    tcp::socket three(h.io);
    boost::system::error_code ec;
    co_await one.async_connect(port, asio::redirect_error(asio::use_awaitable, ec));
    {
      const std::string sent = "one";
      const std::string got = co_await Echo(one, sent);
      EXPECT_EQ(got, sent);
    }
    co_await two.async_connect(port, asio::redirect_error(asio::use_awaitable, ec));
    {
      const std::string sent = "two";
      const std::string got = co_await Echo(two, sent);
      EXPECT_EQ(got, sent);
    }
    co_await three.async_connect(port, asio::redirect_error(asio::use_awaitable, ec));
    EXPECT_TRUE(co_await ClosedWithin(three, 2s)) << "third public connection served";
    {
      const std::string sent = "again";
      const std::string got = co_await Echo(one, sent);
      EXPECT_EQ(got, sent);
    }
    EXPECT_EQ(h.server->stats().public_connections, 2u);
    EXPECT_EQ(h.server->stats().public_refusals, 1u);
    // A closed connection frees its slot.
    one.close();
    EXPECT_TRUE(co_await WaitFor([&] { return h.server->stats().public_connections == 1; }, 5s));
    tcp::socket four(h.io);
    co_await four.async_connect(port, asio::redirect_error(asio::use_awaitable, ec));
    {
      const std::string sent = "four";
      const std::string got = co_await Echo(four, sent);
      EXPECT_EQ(got, sent);
    }
    agent.Stop();
  });
}

// Defect 2, as reported: one EMFILE once ended a public port's accept loop for good (bound, never
// accepting again, the link still "connected"). The server runs in a forked process at
// RLIMIT_NOFILE 96; agent and origin run here. 200 idle public clients, then released: the
// port serves again, and the server neither spun nor wrote a line per failure.
TEST(ZlayerServerDescriptors, PublicPortAcceptsAgainAfterRunningOut) {
  const std::string log_path = (std::filesystem::temp_directory_path() /
                                ("zlayer-emfile-" + std::to_string(::getpid()) + ".log"))
                                   .string();
  std::filesystem::remove(log_path);
  tunnelkit::test::ForkedServer child(96, [&](const auto& report) {
    ::signal(SIGPIPE, SIG_IGN);
    Limits h;
    h.logger = std::make_shared<spdlog::logger>(
        "zlayer", std::make_shared<spdlog::sinks::basic_file_sink_mt>(log_path));
    h.logger->flush_on(spdlog::level::trace);
    ServerOptions options;
    options.pending_timeout = 2s;
    if (!h.Start(options)) return;
    report({h.server->listen_port()});
    h.io.run();
  });
  ASSERT_EQ(child.ports().size(), 1u);
  asio::io_context io;
  tunnelkit::test::TcpEcho echo(io);
  AgentOptions agent_options;
  agent_options.server = transport::WsUrl{false, "127.0.0.1", child.ports()[0], "/tunnel/v1"};
  agent_options.token = "good-token";
  std::string error;
  agent_options.services.push_back(
      *ServiceSpec::Parse("echo:" + std::to_string(echo.port()), error));
  TunnelAgent agent(io, agent_options, std::make_shared<spdlog::logger>("agent"));
  ASSERT_TRUE(agent.Start(error)) << error;
  asio::co_spawn(io, agent.Run(), asio::detached);
  auto guard = asio::make_work_guard(io);
  std::thread thread([&] { io.run(); });
  int port = 0;
  for (int i = 0; i < 100 && port == 0; ++i) {
    std::this_thread::sleep_for(100ms);
    port =
        asio::post(io, asio::use_future([&] {
                     return agent.registered().empty() ? 0 : int{agent.registered()[0].public_port};
                   }))
            .get();
  }
  EXPECT_NE(port, 0);
  if (port != 0) {
    std::vector<int> idle;
    for (int i = 0; i < 200; ++i) {
      const int fd = tunnelkit::test::ConnectLoopback(port);
      if (fd >= 0) idle.push_back(fd);
    }
    std::this_thread::sleep_for(1s);
    const double cpu_before = child.CpuSeconds();
    std::this_thread::sleep_for(2s);
    EXPECT_LT(child.CpuSeconds() - cpu_before, 0.5) << "spinning while out of descriptors";
    EXPECT_TRUE(child.Alive());
    for (int fd : idle) ::close(fd);
    std::string reply;
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (reply != "ping" && std::chrono::steady_clock::now() < deadline) {
      const int fd = tunnelkit::test::ConnectLoopback(port);
      if (fd < 0) break;
      tunnelkit::test::SendAll(fd, "ping", 4);
      reply = tunnelkit::test::ReadFor(fd, 1s, 4);
      ::close(fd);
    }
    const std::string log = tunnelkit::test::ReadFile(log_path);
    EXPECT_EQ(reply, "ping") << "the public port no longer serves\n"
                             << log.substr(log.size() > 6000 ? log.size() - 6000 : 0);
    EXPECT_GE(tunnelkit::test::CountLines(log, "accept failed"), 1u);
    EXPECT_LE(tunnelkit::test::CountLines(log, "accept failed"), 20u);
  }
  asio::post(io, [&] { agent.Stop(); });
  guard.reset();
  std::this_thread::sleep_for(200ms);
  io.stop();
  thread.join();
  std::filesystem::remove(log_path);
}

}  // namespace
}  // namespace tunnelkit::zlayer
