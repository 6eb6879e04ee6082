// TunnelServer and TunnelAgent in one process over real loopback sockets: registration, TCP and
// UDP through the data plane, auth failures, port exhaustion, heartbeats, and what an upstream
// (extension-less) agent sees on the wire.
#include <gtest/gtest.h>
#include <spdlog/sinks/null_sink.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <random>

#include "agent/tunnel_agent.hpp"
#include "codec/codec.hpp"
#include "codec/extension.hpp"
#include "process.hpp"
#include "server/tunnel_server.hpp"
#include "tcp_echo.hpp"
#include "transport/data_socket.hpp"
#include "tunnelkit/stream/deadline.hpp"
#include "util/random.hpp"
#include "wait.hpp"

namespace tunnelkit::zlayer {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;

std::shared_ptr<spdlog::logger> TestLogger() {
  static auto logger = [] {
    // ZLAYER_TEST_LOG=1 shows the server's and agents' logs.
    if (std::getenv("ZLAYER_TEST_LOG") != nullptr) {
      auto l = std::make_shared<spdlog::logger>("zlayer-test",
                                                std::make_shared<spdlog::sinks::stderr_sink_mt>());
      l->set_level(spdlog::level::debug);
      return l;
    }
    return std::make_shared<spdlog::logger>("zlayer-test",
                                            std::make_shared<spdlog::sinks::null_sink_mt>());
  }();
  return logger;
}

// Echo origins on 127.0.0.1.
using tunnelkit::test::TcpEcho;

struct UdpEcho {
  udp::socket socket;
  explicit UdpEcho(asio::io_context& io)
      : socket(io, udp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    asio::co_spawn(io, Loop(), asio::detached);
  }
  int port() const { return socket.local_endpoint().port(); }
  asio::awaitable<void> Loop() {
    std::vector<char> buf(65536);
    for (;;) {
      udp::endpoint from;
      boost::system::error_code ec;
      const auto n = co_await socket.async_receive_from(
          asio::buffer(buf), from, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return;
      std::string reply = "echo:" + std::string(buf.data(), n);
      co_await socket.async_send_to(asio::buffer(reply), from,
                                    asio::redirect_error(asio::use_awaitable, ec));
    }
  }
};

struct Harness {
  asio::io_context io;
  std::unique_ptr<TunnelServer> server;
  std::pair<int, int> range;

  // A range of `count` ports that were free a moment ago (consecutive ports are not
  // guaranteed free, so the range starts at a fresh ephemeral port).
  bool StartServer(int count, ServerOptions options = {},
                   std::shared_ptr<spdlog::logger> logger = TestLogger()) {
    const int low = tunnelkit::test::FreeTcpPort();
    range = {low, low + count - 1};
    options.ws.host = "127.0.0.1";
    options.ws.port = 0;
    options.ports =
        PortPool(static_cast<std::uint16_t>(low), static_cast<std::uint16_t>(low + count - 1));
    options.tokens.Add({HashToken("good-token"), std::nullopt});
    options.tokens.Add({HashToken("second-token"), std::nullopt});
    server = std::make_unique<TunnelServer>(io, std::move(options), std::move(logger));
    std::string error;
    const bool ok = server->Start(error);
    EXPECT_TRUE(ok) << error;
    return ok;
  }

  AgentOptions Agent(const std::string& token, std::vector<std::string> services) {
    AgentOptions options;
    options.server = transport::WsUrl{false, "127.0.0.1", server->listen_port(), "/tunnel/v1"};
    options.token = token;
    std::string error;
    for (const auto& s : services) options.services.push_back(*ServiceSpec::Parse(s, error));
    options.backoff.base = std::chrono::milliseconds(200);
    options.backoff.cap = std::chrono::milliseconds(400);
    return options;
  }

  void Run(std::function<asio::awaitable<void>()> body, std::chrono::seconds limit) {
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

using test::Sleep;
using test::WaitFor;

TEST(ZlayerServerAgent, TcpEchoThroughTheTunnel) {
  Harness h;
  ASSERT_TRUE(h.StartServer(5));
  TcpEcho echo(h.io);
  TunnelAgent agent(h.io, h.Agent("good-token", {"echo:" + std::to_string(echo.port())}),
                    TestLogger());
  std::string error;
  ASSERT_TRUE(agent.Start(error)) << error;
  asio::co_spawn(h.io, agent.Run(), asio::detached);
  h.Run(
      [&]() -> asio::awaitable<void> {
        EXPECT_TRUE(co_await WaitFor([&] { return !agent.registered().empty(); },
                                     std::chrono::seconds(10)));
        if (agent.registered().empty()) co_return;
        const auto reg = agent.registered()[0];
        EXPECT_TRUE(reg.ok) << reg.error;
        EXPECT_EQ(reg.public_port, h.range.first);  // lowest free port of the range
        EXPECT_EQ(agent.supervisor().state(), session::LinkState::kConnected);

        // 4 MiB each way on two connections at once.
        std::string body(4 << 20, '\0');
        std::mt19937 rng(1);
        for (auto& c : body) c = static_cast<char>(rng());
        auto one = [&](int salt) -> asio::awaitable<void> {
          tcp::socket s(h.io);
          boost::system::error_code ec;
          co_await s.async_connect(
              tcp::endpoint(asio::ip::make_address("127.0.0.1"), reg.public_port),
              asio::redirect_error(asio::use_awaitable, ec));
          EXPECT_FALSE(ec) << ec.message();
          std::string mine = body;
          mine[0] = static_cast<char>(salt);
          asio::co_spawn(
              h.io,
              [&s, &mine]() -> asio::awaitable<void> {
                boost::system::error_code wec;
                co_await asio::async_write(s, asio::buffer(mine),
                                           asio::redirect_error(asio::use_awaitable, wec));
                s.shutdown(tcp::socket::shutdown_send, wec);
              },
              asio::detached);
          std::string back(mine.size(), '\0');
          co_await asio::async_read(s, asio::buffer(back),
                                    asio::redirect_error(asio::use_awaitable, ec));
          EXPECT_FALSE(ec) << ec.message();
          EXPECT_EQ(tunnelkit::test::Sha256Hex(back), tunnelkit::test::Sha256Hex(mine));
          char extra;
          co_await s.async_read_some(asio::buffer(&extra, 1),
                                     asio::redirect_error(asio::use_awaitable, ec));
          EXPECT_EQ(ec, asio::error::eof);  // the origin's half-close came through
        };
        int finished = 0;
        for (int i = 0; i < 2; ++i) {
          asio::co_spawn(
              h.io,
              [&, i]() -> asio::awaitable<void> {
                co_await one(i + 1);
                ++finished;
              },
              asio::detached);
        }
        EXPECT_TRUE(co_await WaitFor([&] { return finished == 2; }, std::chrono::seconds(30)));
        EXPECT_EQ(h.server->stats().connections, 2u);
        agent.Stop();
      },
      std::chrono::seconds(40));
}

TEST(ZlayerServerAgent, UdpEchoThroughTheTunnel) {
  Harness h;
  ASSERT_TRUE(h.StartServer(3));
  UdpEcho echo(h.io);
  TunnelAgent agent(h.io, h.Agent("good-token", {"dns:" + std::to_string(echo.port()) + "/udp"}),
                    TestLogger());
  std::string error;
  ASSERT_TRUE(agent.Start(error)) << error;
  // The agent's run (and its UDP flows) must end before the agent and the echo are destroyed:
  // frames torn down later by the io_context would touch freed memory.
  bool agent_done = false;
  asio::co_spawn(h.io, agent.Run(),
                 [&](std::exception_ptr, session::SupervisorResult) { agent_done = true; });
  h.Run(
      [&]() -> asio::awaitable<void> {
        EXPECT_TRUE(co_await WaitFor([&] { return !agent.registered().empty(); },
                                     std::chrono::seconds(10)));
        if (agent.registered().empty() || !agent.registered()[0].ok) co_return;
        const int port = agent.registered()[0].public_port;
        udp::socket client(h.io, udp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
        const udp::endpoint target(asio::ip::make_address("127.0.0.1"),
                                   static_cast<unsigned short>(port));
        for (int i = 0; i < 5; ++i) {
          const std::string datagram = "ping " + std::to_string(i);
          co_await client.async_send_to(asio::buffer(datagram), target, asio::use_awaitable);
          char buf[100];
          udp::endpoint from;
          asio::steady_timer timeout(h.io, std::chrono::seconds(5));
          timeout.async_wait([&](boost::system::error_code ec) {
            if (!ec) client.cancel();
          });
          boost::system::error_code ec;
          const auto n = co_await client.async_receive_from(
              asio::buffer(buf), from, asio::redirect_error(asio::use_awaitable, ec));
          timeout.cancel();
          EXPECT_FALSE(ec) << ec.message();
          EXPECT_EQ(std::string(buf, n), "echo:" + datagram);
        }
        EXPECT_EQ(h.server->stats().connections, 1u);  // one flow per client address
        agent.Stop();
        EXPECT_TRUE(co_await WaitFor([&] { return agent_done; }, std::chrono::seconds(10)));
      },
      std::chrono::seconds(30));
}

TEST(ZlayerServerAgent, WrongTokenIsAPermanentFailureWithTheReason) {
  Harness h;
  ASSERT_TRUE(h.StartServer(2));
  TunnelAgent agent(h.io, h.Agent("bad-token", {"x:1"}), TestLogger());
  std::string error;
  ASSERT_TRUE(agent.Start(error));
  h.Run(
      [&]() -> asio::awaitable<void> {
        const auto result = co_await agent.Run();
        EXPECT_EQ(result.kind, session::SupervisorEnd::kPermanentFailure);
        EXPECT_NE(result.reason.find("Authentication error: invalid tunnel token"),
                  std::string::npos)
            << result.reason;
        EXPECT_EQ(h.server->stats().auth_failures, 1u);
      },
      std::chrono::seconds(20));
}

TEST(ZlayerServerAgent, TokenInUseIsRefusedAndRetried) {
  Harness h;
  ASSERT_TRUE(h.StartServer(4));
  TcpEcho echo(h.io);
  TunnelAgent first(h.io, h.Agent("good-token", {"a:" + std::to_string(echo.port())}),
                    TestLogger());
  auto second_options = h.Agent("good-token", {"b:" + std::to_string(echo.port())});
  second_options.backoff.max_attempts = 2;
  TunnelAgent second(h.io, second_options, TestLogger());
  std::string error;
  ASSERT_TRUE(first.Start(error) && second.Start(error));
  asio::co_spawn(h.io, first.Run(), asio::detached);
  h.Run(
      [&]() -> asio::awaitable<void> {
        EXPECT_TRUE(co_await WaitFor([&] { return !first.registered().empty(); },
                                     std::chrono::seconds(10)));
        const auto result = co_await second.Run();
        EXPECT_EQ(result.kind, session::SupervisorEnd::kAttemptsExhausted);
        EXPECT_NE(result.reason.find("Token already in use"), std::string::npos) << result.reason;
        EXPECT_EQ(h.server->stats().tunnels, 1u);
        first.Stop();
      },
      std::chrono::seconds(20));
}

TEST(ZlayerServerAgent, PortsExhaustedAndSpecificPorts) {
  Harness h;
  ASSERT_TRUE(h.StartServer(1));
  TcpEcho echo(h.io);
  const auto p = std::to_string(echo.port());
  TunnelAgent agent(h.io, h.Agent("good-token", {"a:" + p, "b:" + p, "c:" + p + ":1"}),
                    TestLogger());
  std::string error;
  ASSERT_TRUE(agent.Start(error));
  asio::co_spawn(h.io, agent.Run(), asio::detached);
  h.Run(
      [&]() -> asio::awaitable<void> {
        EXPECT_TRUE(co_await WaitFor([&] { return agent.registered().size() == 3; },
                                     std::chrono::seconds(10)));
        if (agent.registered().size() != 3) co_return;
        EXPECT_TRUE(agent.registered()[0].ok);
        EXPECT_FALSE(agent.registered()[1].ok);
        EXPECT_EQ(agent.registered()[1].error, "Registry error: no ports available");
        EXPECT_FALSE(agent.registered()[2].ok);
        EXPECT_EQ(agent.registered()[2].error, "Registry error: port 1 is not available");
        agent.Stop();
      },
      std::chrono::seconds(20));
}

TEST(ZlayerServerAgent, ReRegistersAfterTheServerComesBack) {
  Harness h;
  ASSERT_TRUE(h.StartServer(2));
  TcpEcho echo(h.io);
  const int ws_port = h.server->listen_port();
  TunnelAgent agent(h.io, h.Agent("good-token", {"echo:" + std::to_string(echo.port())}),
                    TestLogger());
  int rounds = 0;
  agent.OnRegistered([&](const std::vector<RegisteredService>&) { ++rounds; });
  std::string error;
  ASSERT_TRUE(agent.Start(error));
  asio::co_spawn(h.io, agent.Run(), asio::detached);
  h.Run(
      [&]() -> asio::awaitable<void> {
        EXPECT_TRUE(co_await WaitFor([&] { return rounds == 1; }, std::chrono::seconds(10)));
        bool stopped = false;
        h.server->Stop("restart", [&] { stopped = true; });
        EXPECT_TRUE(co_await WaitFor([&] { return stopped; }, std::chrono::seconds(5)));
        h.server.reset();
        co_await Sleep(std::chrono::milliseconds(600));  // the agent fails to reconnect meanwhile
        ServerOptions options;
        options.ws.host = "127.0.0.1";
        options.ws.port = ws_port;
        options.ports = PortPool(static_cast<std::uint16_t>(h.range.first),
                                 static_cast<std::uint16_t>(h.range.second));
        options.tokens.Add({HashToken("good-token"), std::nullopt});
        h.server = std::make_unique<TunnelServer>(h.io, std::move(options), TestLogger());
        EXPECT_TRUE(h.server->Start(error)) << error;
        EXPECT_TRUE(co_await WaitFor([&] { return rounds == 2; }, std::chrono::seconds(10)));
        EXPECT_GE(agent.supervisor().reconnects(), 1u);
        EXPECT_EQ(h.server->stats().services, 1u);
        agent.Stop();
      },
      std::chrono::seconds(30));
}

// An agent written to upstream's wire (no tunnelkit trailer) sees upstream's exact messages.
TEST(ZlayerServerAgent, UpstreamAgentSeesPlainControlChannel) {
  Harness h;
  ServerOptions options;
  options.heartbeat_interval = std::chrono::milliseconds(200);
  options.heartbeat_timeout = std::chrono::milliseconds(700);
  ASSERT_TRUE(h.StartServer(2, std::move(options)));
  transport::WsLoop client(h.io);
  std::string error;
  ASSERT_TRUE(client.Start(std::nullopt, nullptr, transport::WsClientOptions{}, error));
  h.Run(
      [&]() -> asio::awaitable<void> {
        const transport::WsUrl url{false, "127.0.0.1", h.server->listen_port(), "/any/path"};
        auto conn = co_await client.Connect(url, error);
        EXPECT_TRUE(conn) << error;
        if (!conn) co_return;
        const auto auth = codec::Encode(codec::Auth{"good-token", {}, ""}).bytes;
        co_await conn->Send(auth);
        auto auth_ok = co_await conn->Receive();
        EXPECT_TRUE(auth_ok);
        if (!auth_ok) co_return;
        EXPECT_EQ(auth_ok->size(), 21u);  // header + tunnel id, nothing more
        EXPECT_EQ((*auth_ok)[0], 0x02);
        const auto reg =
            codec::Encode(codec::Register{"ssh", codec::ServiceProtocol::kTcp, 22, 0}).bytes;
        co_await conn->Send(reg);
        int heartbeats = 0;
        bool register_ok = false;
        std::string disconnect;
        // Never acknowledge heartbeats: the server must give up after the timeout.
        while (auto message = co_await conn->Receive()) {
          const auto decoded = codec::Decode(*message);
          EXPECT_TRUE(decoded.ok) << decoded.error;
          if (std::holds_alternative<codec::RegisterOk>(decoded.message)) {
            register_ok = true;
            EXPECT_EQ(message->size(), 21u);
          } else if (std::holds_alternative<codec::Heartbeat>(decoded.message)) {
            EXPECT_EQ(message->size(), 13u);
            ++heartbeats;
          } else if (const auto* d = std::get_if<codec::Disconnect>(&decoded.message)) {
            disconnect = d->reason;
          }
        }
        EXPECT_TRUE(register_ok);
        EXPECT_GE(heartbeats, 2);
        EXPECT_EQ(disconnect, "heartbeat timeout");
        co_await Sleep(std::chrono::milliseconds(50));
        EXPECT_EQ(h.server->stats().tunnels, 0u);  // token and ports released
        client.Stop();
      },
      std::chrono::seconds(20));
}

TEST(ZlayerServerAgent, FirstMessageMustBeAuth) {
  Harness h;
  ASSERT_TRUE(h.StartServer(1));
  transport::WsLoop client(h.io);
  std::string error;
  ASSERT_TRUE(client.Start(std::nullopt, nullptr, transport::WsClientOptions{}, error));
  h.Run(
      [&]() -> asio::awaitable<void> {
        const transport::WsUrl url{false, "127.0.0.1", h.server->listen_port(), "/"};
        auto conn = co_await client.Connect(url, error);
        EXPECT_TRUE(conn) << error;
        if (!conn) co_return;
        const auto heartbeat = codec::Encode(codec::Heartbeat{1}).bytes;
        co_await conn->Send(heartbeat);
        auto reply = co_await conn->Receive();
        EXPECT_TRUE(reply);
        if (reply) {
          const auto decoded = codec::Decode(*reply);
          EXPECT_TRUE(decoded.ok && std::holds_alternative<codec::AuthFail>(decoded.message));
          if (decoded.ok && std::holds_alternative<codec::AuthFail>(decoded.message)) {
            EXPECT_EQ(std::get<codec::AuthFail>(decoded.message).reason, "Expected AUTH message");
          }
        }
        EXPECT_FALSE(co_await conn->Receive());  // then closed
        client.Stop();
      },
      std::chrono::seconds(20));
}

// Logs into a string, for tests that check what the server says.
struct CapturedLog {
  std::ostringstream text;
  std::shared_ptr<spdlog::logger> logger = std::make_shared<spdlog::logger>(
      "zlayer-captured", std::make_shared<spdlog::sinks::ostream_sink_mt>(text));
  CapturedLog() { logger->set_level(spdlog::level::debug); }
  std::string str() {
    logger->flush();
    return text.str();
  }
};

// A tunnelkit agent's control session by hand (lws client): Auth offering `hello`, the AuthOk.
asio::awaitable<std::optional<codec::AuthOk>> HandAuth(
    transport::WsLoop& client, int port, std::string hello,
    std::shared_ptr<transport::WsConnection>& conn, std::size_t& auth_ok_size) {
  std::string error;
  const transport::WsUrl url{false, "127.0.0.1", port, "/tunnel/v1"};
  conn = co_await client.Connect(url, error);
  EXPECT_TRUE(conn) << error;
  if (!conn) co_return std::nullopt;
  const auto auth = codec::Encode(codec::Auth{"good-token", {}, std::move(hello)}).bytes;
  co_await conn->Send(auth);
  auto reply = co_await conn->Receive();
  EXPECT_TRUE(reply);
  if (!reply) co_return std::nullopt;
  auth_ok_size = reply->size();
  auto decoded = codec::Decode(*reply);
  EXPECT_TRUE(decoded.ok && std::holds_alternative<codec::AuthOk>(decoded.message));
  if (!decoded.ok || !std::holds_alternative<codec::AuthOk>(decoded.message))
    co_return std::nullopt;
  co_return std::get<codec::AuthOk>(decoded.message);
}

// A data upgrade (tunnelkit-data.v2) whose DataAttach carries a wrong secret, or names no
// pending connection, is closed and logged; the right secret for a pending one is not refused.
TEST(ZlayerServerAgent, DataAttachWithABadSecretIsRefusedAndLogged) {
  Harness h;
  CapturedLog log;
  ASSERT_TRUE(h.StartServer(2, {}, log.logger));
  transport::WsLoop client(h.io);
  std::string error;
  ASSERT_TRUE(client.Start(std::nullopt, nullptr, transport::WsClientOptions{}, error));
  h.Run(
      [&]() -> asio::awaitable<void> {
        std::shared_ptr<transport::WsConnection> control;
        std::size_t size = 0;
        auto ok = co_await HandAuth(client, h.server->listen_port(), codec::EncodeAgentHello({}),
                                    control, size);
        if (!ok) co_return;
        const auto hello = codec::DecodeServerHello(ok->trailer);
        EXPECT_TRUE(hello);
        if (!hello) co_return;
        EXPECT_EQ(hello->version, 2);

        // Sends DataAttach with `secret` and reports whether the server closed the socket.
        auto attach_is_refused = [&](std::array<std::uint8_t, 16> secret) -> asio::awaitable<bool> {
          std::string dial_error;
          const transport::WsUrl url{false, "127.0.0.1", h.server->listen_port(), "/tunnel/v1"};
          auto data = co_await transport::DialDataSocket(
              h.io.get_executor(), url, nullptr, std::chrono::seconds(5),
              transport::DataKind::kPerConnection, dial_error);
          EXPECT_TRUE(data) << dial_error;
          if (!data) co_return false;
          const auto attach =
              codec::Encode(codec::DataAttach{ok->tunnel_id, RandomUuidV4(), secret});
          EXPECT_FALSE(co_await data->WriteMessage(asio::buffer(attach.bytes)));
          Deadline deadline(h.io.get_executor());
          deadline.Arm(std::chrono::seconds(5), [data] { data->Close(); });
          std::array<char, 16> buf;
          const auto r = co_await data->ReadSome(asio::buffer(buf));
          co_return r.ec && !deadline.fired();
        };
        auto wrong = hello->data_secret;
        wrong[3] ^= 0x40;
        EXPECT_TRUE(co_await attach_is_refused(wrong));
        EXPECT_NE(log.str().find("with a wrong secret; closing"), std::string::npos) << log.str();
        // The right secret, but no such pending connection: refused too, for another reason.
        EXPECT_TRUE(co_await attach_is_refused(hello->data_secret));
        EXPECT_NE(log.str().find("data connection for unknown or expired connection"),
                  std::string::npos)
            << log.str();
        control->Close();
        client.Stop();
      },
      std::chrono::seconds(20));
}

// An agent of data plane v1 is served the control channel only (byte-exact upstream AuthOk),
// with a line saying why.
TEST(ZlayerServerAgent, DataPlaneV1AgentGetsTheControlChannelOnly) {
  Harness h;
  CapturedLog log;
  ASSERT_TRUE(h.StartServer(2, {}, log.logger));
  transport::WsLoop client(h.io);
  std::string error;
  ASSERT_TRUE(client.Start(std::nullopt, nullptr, transport::WsClientOptions{}, error));
  h.Run(
      [&]() -> asio::awaitable<void> {
        std::shared_ptr<transport::WsConnection> control;
        std::size_t size = 0;
        auto ok = co_await HandAuth(client, h.server->listen_port(), std::string("TKDP\x01"),
                                    control, size);
        EXPECT_TRUE(ok);
        EXPECT_EQ(size, 21u);
        EXPECT_NE(log.str().find("offers tunnelkit data plane v1; this server needs v2"),
                  std::string::npos)
            << log.str();
        if (control) control->Close();
        client.Stop();
      },
      std::chrono::seconds(20));
}

}  // namespace
}  // namespace tunnelkit::zlayer
