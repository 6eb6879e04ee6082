// What a held connection costs: TunnelServer and TunnelAgent in this process over real loopback
// sockets (wss, and plain ws), a few hundred public connections that each echoed a few bytes
// and stay open. The heap they add, server and agent together, is bounded per connection
// (issue 8: ≤ 30 MB per tunnel process with 1000 connections).
#include <gtest/gtest.h>
#include <malloc.h>
#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>

#include <array>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <memory>
#include <vector>

#include "agent/tunnel_agent.hpp"
#include "process.hpp"
#include "sanitizer.hpp"
#include "server/tunnel_server.hpp"
#include "tcp_echo.hpp"
#include "test_certs.hpp"
#include "tunnelkit/memory_trim.hpp"
#include "wait.hpp"

namespace tunnelkit::zlayer {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;

constexpr bool kSanitized = tunnelkit::test::kAddressSanitizer;

std::shared_ptr<spdlog::logger> QuietLogger() {
  return std::make_shared<spdlog::logger>("zlayer-memory-test",
                                          std::make_shared<spdlog::sinks::null_sink_mt>());
}

// Bytes of the heap in use, without mmapped chunks: what a connection keeps is small objects;
// the mmapped ones are the shared data buffers (256 KiB chunks, pooled and renewed now and then).
// TuneAllocator fixes glibc's mmap threshold at 128 KiB, as in tunnelctl.
std::size_t HeapInUse() {
  const struct mallinfo2 info = mallinfo2();
  return info.uordblks;
}

using test::Sleep;

// Opens `count` public connections at once (as a crowd of clients would), each sends a line and
// reads its echo; the sockets stay open in `held`. Returns how many echoed correctly.
asio::awaitable<int> OpenEchoed(asio::io_context& io, int port, int count,
                                std::vector<std::unique_ptr<tcp::socket>>& held) {
  // Shared with the spawned exchanges: one that finishes after the deadline below must not
  // write into this coroutine's frame, which is gone by then (found by ASan).
  struct Counts {
    int echoed = 0;
    int finished = 0;
  };
  auto counts = std::make_shared<Counts>();
  for (int i = 0; i < count; ++i) {
    held.push_back(std::make_unique<tcp::socket>(io));
    asio::co_spawn(
        io,
        [counts, port, i, s = held.back().get()]() -> asio::awaitable<void> {
          boost::system::error_code ec;
          co_await s->async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port),
                                    asio::redirect_error(asio::use_awaitable, ec));
          const std::string line = "ping " + std::to_string(i) + "\n";
          if (!ec) {
            co_await asio::async_write(*s, asio::buffer(line),
                                       asio::redirect_error(asio::use_awaitable, ec));
          }
          std::string back(line.size(), '\0');
          if (!ec) {
            co_await asio::async_read(*s, asio::buffer(back),
                                      asio::redirect_error(asio::use_awaitable, ec));
          }
          if (!ec && back == line) ++counts->echoed;
          ++counts->finished;
        },
        asio::detached);
  }
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (counts->finished < count && std::chrono::steady_clock::now() < end) {
    co_await Sleep(std::chrono::milliseconds(20));
  }
  co_return counts->echoed;
}

// Heap (KiB) per connection held through a tunnel: wss or plain ws control and data connections.
double HeldConnectionHeap(bool tls, DataChannels data_channels = DataChannels::kAuto) {
  tunnelkit::TuneAllocator();
  asio::io_context io;
  test::TestCert cert;
  EXPECT_TRUE(cert.ok);
  if (!cert.ok) return -1;
  tunnelkit::test::TcpEcho echo(
      io, 64);  // a small buffer: the origin's own cost stays out of the figure

  ServerOptions server_options;
  const int low = tunnelkit::test::FreeTcpPort();
  server_options.ws.host = "127.0.0.1";
  if (tls) {
    server_options.ws.tls_cert = cert.cert;
    server_options.ws.tls_key = cert.key;
  }
  server_options.ports = PortPool(static_cast<std::uint16_t>(low), static_cast<std::uint16_t>(low));
  server_options.tokens.Add({HashToken("memory-token"), std::nullopt});
  TunnelServer server(io, std::move(server_options), QuietLogger());
  std::string error;
  EXPECT_TRUE(server.Start(error)) << error;
  if (!error.empty()) return -1;

  AgentOptions agent_options;
  agent_options.server = transport::WsUrl{tls, "127.0.0.1", server.listen_port(), "/tunnel/v1"};
  agent_options.token = "memory-token";
  agent_options.data_channels = data_channels;
  if (tls) agent_options.tls.tls_ca = cert.cert;
  agent_options.services.push_back(
      *ServiceSpec::Parse("echo:" + std::to_string(echo.port()), error));
  TunnelAgent agent(io, agent_options, QuietLogger());
  EXPECT_TRUE(agent.Start(error)) << error;
  if (!error.empty()) return -1;
  asio::co_spawn(io, agent.Run(), asio::detached);

  // Under ASan the bound is not checked, and 300 TLS handshakes per side (per-connection data
  // channels) take longer than OpenEchoed's 30 s on a loaded 2-core machine: a third of them
  // still checks that a crowd is served.
  constexpr int kConnections = kSanitized ? 100 : 300;
  bool done = false;
  double per_connection = 0;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (agent.registered().empty() && std::chrono::steady_clock::now() < end) {
          co_await Sleep(std::chrono::milliseconds(20));
        }
        EXPECT_FALSE(agent.registered().empty());
        if (agent.registered().empty()) co_return;
        const auto reg = agent.registered()[0];
        EXPECT_TRUE(reg.ok) << reg.error;
        // A first crowd warms what is kept once (pools, caches), then goes away.
        {
          std::vector<std::unique_ptr<tcp::socket>> warm;
          EXPECT_EQ(co_await OpenEchoed(io, reg.public_port, 32, warm), 32);
        }
        co_await Sleep(std::chrono::milliseconds(300));
        const std::size_t before = HeapInUse();
        std::vector<std::unique_ptr<tcp::socket>> held;
        EXPECT_EQ(co_await OpenEchoed(io, reg.public_port, kConnections, held), kConnections);
        co_await Sleep(std::chrono::milliseconds(200));
        const std::size_t after = HeapInUse();
        per_connection =
            (static_cast<double>(after) - static_cast<double>(before)) / kConnections / 1024;
        // Still working after the measurement.
        const std::string again = "again\n";
        boost::system::error_code ec;
        co_await asio::async_write(*held.front(), asio::buffer(again),
                                   asio::redirect_error(asio::use_awaitable, ec));
        std::string back(again.size(), '\0');
        co_await asio::async_read(*held.front(), asio::buffer(back),
                                  asio::redirect_error(asio::use_awaitable, ec));
        EXPECT_EQ(back, again) << ec.message();
        agent.Stop();
        server.Stop("test over");
        done = true;
        io.stop();
      },
      asio::detached);
  asio::steady_timer guard(io, std::chrono::seconds(60));
  guard.async_wait([&](boost::system::error_code ec) {
    if (!ec) io.stop();
  });
  io.run();
  EXPECT_TRUE(done) << "timed out";
  if (!done) return -1;
  std::printf("heap per held %s connection (server + agent + client, %s data channels): %.1f KiB\n",
              tls ? "wss" : "ws",
              data_channels == DataChannels::kShared          ? "shared"
              : data_channels == DataChannels::kPerConnection ? "per-connection"
                                                              : "auto",
              per_connection);
  return per_connection;
}

TEST(ZlayerMemory, HeldWssPerConnectionSocketsStaySmall) {
  // 58.6 KiB with StreamRef (a coroutine per Beast read and write) and two spawned splice
  // directions, 54.6 now; about 25 KiB of it is OpenSSL's own state after the handshake (two
  // SSL objects of 8 KiB, their ciphers and sessions). 55.3 when run alone (as ctest does);
  // 58.5 when the ZlayerDataPlane tests ran before it in the same process. Since data
  // upgrades name their link (Tunnelkit-Link), 55.8-60.7 from run to run of the whole binary,
  // hence the bound: it is there to catch a buffer kept per connection, tens of KiB at least.
  const double per_connection = HeldConnectionHeap(true, DataChannels::kPerConnection);
  ASSERT_GE(per_connection, 0);
  if (kSanitized) GTEST_SKIP() << tunnelkit::test::kMemoryBoundUnderAsan;
  EXPECT_LE(per_connection, 66) << "KiB of heap per held wss connection";
}

TEST(ZlayerMemory, HeldWssConnectionsStaySmall) {
  // wss shares data WebSockets by default: 300 connections ride one TLS session. A held
  // connection then costs 13.3 KiB (a mux stream and its splice coroutines on each side, the
  // public and local sockets, no buffer while idle): less than plain ws (22 KiB, a Beast
  // WebSocket per connection). 19.0 with the core Splice (a 2 KiB read buffer per idle stream
  // direction); one TLS session per connection (per-connection data channels) costs 55.3.
  const double per_connection = HeldConnectionHeap(true);
  ASSERT_GE(per_connection, 0);
  if (kSanitized) GTEST_SKIP() << tunnelkit::test::kMemoryBoundUnderAsan;
  EXPECT_LE(per_connection, 17) << "KiB of heap per held wss connection";
}

TEST(ZlayerMemory, HeldWsConnectionsStaySmall) {
  // 22 KiB: the wss figure less OpenSSL's state and the agent's buffered read (plain ws
  // splices server -> agent).
  const double per_connection = HeldConnectionHeap(false);
  ASSERT_GE(per_connection, 0);
  if (kSanitized) GTEST_SKIP() << tunnelkit::test::kMemoryBoundUnderAsan;
  EXPECT_LE(per_connection, 26) << "KiB of heap per held ws connection";
}

}  // namespace
}  // namespace tunnelkit::zlayer
