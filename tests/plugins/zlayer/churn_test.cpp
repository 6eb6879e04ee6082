// Connection churn (issue 22): 500 cycles of an agent connecting to a TunnelServer,
// registering a TCP service, carrying an echo now and then, and stopping. Afterwards the server
// holds no tunnel, no WebSocket connection, mux session or mux stream is alive in the process,
// and resident memory stays about where it was after the warm-up.
#include <gtest/gtest.h>
#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "agent/tunnel_agent.hpp"
#include "process.hpp"
#include "process_memory.hpp"
#include "sanitizer.hpp"
#include "server/tunnel_server.hpp"
#include "tcp_echo.hpp"
#include "transport/ws_connection.hpp"
#include "tunnelkit/mux/session.hpp"

namespace tunnelkit::zlayer {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;

// A cycle takes about 10 ms on loopback. It took 234 ms while every ws:// agent created a
// client TLS context in libwebsockets (the system's roots loaded into it) that it never used.
constexpr int kCycles = 500;
constexpr int kWarmupCycles = 50;
constexpr int kEchoEvery = 25;
// The whole run, outside sanitizers: 500 cycles at the old cost would take two minutes.
constexpr auto kRunBound = std::chrono::seconds(30);

std::shared_ptr<spdlog::logger> QuietLogger() {
  return std::make_shared<spdlog::logger>("zlayer-churn",
                                          std::make_shared<spdlog::sinks::null_sink_mt>());
}

// Polls `done` every 2 ms for at most `limit` (a template: see wait.hpp).
template <class Done>
asio::awaitable<bool> PollFor(Done done, std::chrono::milliseconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  asio::steady_timer timer(co_await asio::this_coro::executor);
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) co_return false;
    timer.expires_after(2ms);
    co_await timer.async_wait(asio::use_awaitable);
  }
  co_return true;
}

asio::awaitable<bool> Echoes(asio::io_context& io, int port, const std::string& line) {
  tcp::socket s(io);
  boost::system::error_code ec;
  co_await s.async_connect(
      tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)),
      asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return false;
  co_await asio::async_write(s, asio::buffer(line), asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return false;
  std::string back(line.size(), '\0');
  co_await asio::async_read(s, asio::buffer(back), asio::redirect_error(asio::use_awaitable, ec));
  co_return !ec && back == line;
}

TEST(ZlayerChurn, FiveHundredAgentCyclesLeaveNothingAlive) {
  asio::io_context io;
  auto logger = QuietLogger();
  ServerOptions server_options;
  server_options.ws.host = "127.0.0.1";
  server_options.ws.port = 0;
  const int low = tunnelkit::test::FreeTcpPort();
  server_options.ports =
      PortPool(static_cast<std::uint16_t>(low), static_cast<std::uint16_t>(low + 4));
  server_options.tokens.Add({HashToken("good-token"), std::nullopt});
  TunnelServer server(io, std::move(server_options), logger);
  std::string error;
  ASSERT_TRUE(server.Start(error)) << error;
  tunnelkit::test::TcpEcho echo(io);

  AgentOptions agent_options;
  agent_options.server = transport::WsUrl{false, "127.0.0.1", server.listen_port(), "/tunnel/v1"};
  agent_options.token = "good-token";
  agent_options.services.push_back(
      *ServiceSpec::Parse("echo:" + std::to_string(echo.port()), error));
  agent_options.backoff.base = 50ms;
  agent_options.backoff.cap = 100ms;

  int registered = 0;
  int echoes = 0;
  long warm_kib = 0;
  bool finished = false;
  const auto started = std::chrono::steady_clock::now();
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        for (int cycle = 0; cycle < kCycles; ++cycle) {
          if (cycle == kWarmupCycles) warm_kib = tunnelkit::test::ResidentKib();
          auto agent = std::make_unique<TunnelAgent>(io, agent_options, logger);
          std::string start_error;
          EXPECT_TRUE(agent->Start(start_error)) << start_error;
          bool ended = false;
          asio::co_spawn(io, agent->Run(),
                         [&ended](std::exception_ptr, session::SupervisorResult) { ended = true; });
          bool ok = co_await PollFor([&] { return !agent->registered().empty(); }, 10s);
          EXPECT_TRUE(ok) << "cycle " << cycle << ": not registered";
          if (!ok) break;
          const auto reg = agent->registered()[0];
          EXPECT_TRUE(reg.ok) << reg.error;
          ++registered;
          if (cycle % kEchoEvery == 0) {
            bool echoed = co_await Echoes(io, reg.public_port, "churn " + std::to_string(cycle));
            EXPECT_TRUE(echoed) << "cycle " << cycle;
            if (echoed) ++echoes;
          }
          agent->Stop();
          ok = co_await PollFor([&] { return ended; }, 10s);
          EXPECT_TRUE(ok) << "cycle " << cycle << ": the agent did not stop";
          if (!ok) break;
          agent.reset();
          // The server lets the tunnel (and its token) go once the control connection ended.
          ok = co_await PollFor([&] { return server.stats().tunnels == 0; }, 10s);
          EXPECT_TRUE(ok) << "cycle " << cycle << ": the server kept the tunnel";
          if (!ok) break;
        }
        bool clean = co_await PollFor(
            [] {
              return transport::WsConnection::live() == 0 && mux::MuxSession::live() == 0 &&
                     mux::MuxStream::live() == 0;
            },
            10s);
        EXPECT_TRUE(clean) << transport::WsConnection::live() << " WebSocket connections, "
                           << mux::MuxSession::live() << " mux sessions, " << mux::MuxStream::live()
                           << " mux streams alive";
        finished = true;
        io.stop();
      },
      [](std::exception_ptr e) {
        if (e) std::rethrow_exception(e);
      });
  asio::steady_timer guard(io, 120s);
  guard.async_wait([&](boost::system::error_code ec) {
    if (!ec) io.stop();
  });
  io.run();
  ASSERT_TRUE(finished) << "timed out";
  EXPECT_EQ(registered, kCycles);
  EXPECT_EQ(echoes, kCycles / kEchoEvery);
  const long end_kib = tunnelkit::test::ResidentKib();
  const auto seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::cout << kCycles << " cycles in " << seconds << " s (" << seconds * 1000 / kCycles
            << " ms each); resident " << warm_kib << " -> " << end_kib
            << " KiB after the warm-up\n";
  if (tunnelkit::test::kAddressSanitizer) {
    GTEST_SKIP() << tunnelkit::test::kMemoryBoundUnderAsan;
  }
  EXPECT_LT(seconds, std::chrono::duration<double>(kRunBound).count())
      << "an agent cycle costs " << seconds * 1000 / kCycles << " ms";
  // A leaked agent connection (a libwebsockets connection, its buffers and mux session) per
  // cycle would add MiBs over 450 cycles; allocator noise stays within a few.
  EXPECT_LT(end_kib - warm_kib, 4 * 1024) << "KiB of resident memory gained over 450 cycles";
}

}  // namespace
}  // namespace tunnelkit::zlayer
