// Connection churn against the edge emulator, in process, over real QUIC on loopback: the
// client's pieces (DialEdge, RegistrationClient, EdgeStreamServer) against the emulator's (a
// QuicServer, EdgeRpcSession and TunnelRegistry, as tools/cfedge wires them). Every cycle
// connects, registers, serves an edge-opened RPC stream now and then, unregisters and closes.
// Afterwards nothing may be left: no QUIC connection or stream state, no RPC session on either
// side, no registration, and resident memory about where it was.
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <memory>

#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include "client/edge_link.hpp"
#include "client/edge_stream_server.hpp"
#include "emulator/edge_rpc_session.hpp"
#include "emulator/quic_edge_connection.hpp"
#include "emulator/tunnel_registry.hpp"
#include "process_memory.hpp"
#include "quic_test_env.hpp"
#include "rpc_stream_calls.hpp"
#include "sanitizer.hpp"
#include "tunnelkit/cloudflare/wire/quic/quic_server.hpp"
#include "tunnelkit/cloudflare/wire/rpc/registration_client.hpp"
#include "tunnelkit/origin/origin_proxy.hpp"
#include "tunnelkit/session/drain.hpp"

namespace tunnelkit::cloudflare {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

constexpr int kCycles = 500;
constexpr int kWarmupCycles = 50;  // RSS is measured from here: allocator pools are warm
constexpr int kRpcStreamEvery = 5;

// The emulator's side, wired as tools/cfedge wires it: one EdgeRpcSession per control stream,
// dropped once the client closes that stream.
class Edge {
 public:
  Edge(asio::io_context& io, AsioKjLoop& loop)
      : io_(io),
        loop_(loop),
        registry_(emulator::TunnelRegistry::Options{}),
        listener_(io.get_executor(), quic::test::Loopback(), quic::test::ServerOptions(),
                  [this](std::shared_ptr<quic::QuicConnection> c) {
                    latest_ = c;
                    asio::co_spawn(io_, Serve(std::move(c)), asio::detached);
                  }) {
    tunnel_ = registry_.Issue();
  }

  std::uint16_t port() const { return listener_.local_endpoint().port(); }
  const QuickTunnel& tunnel() const { return tunnel_; }
  std::shared_ptr<quic::QuicConnection> latest() const { return latest_.lock(); }
  std::size_t sessions() const { return sessions_.size(); }
  std::size_t registrations() const { return registry_.registrations().size(); }
  void Close() { listener_.Close(0); }

 private:
  struct Held {
    std::unique_ptr<emulator::EdgeRpcSession> session;
    std::shared_ptr<emulator::EdgeConnection> connection;
  };

  asio::awaitable<void> Serve(std::shared_ptr<quic::QuicConnection> connection) {
    auto control = co_await connection->AcceptStream();
    if (!control) co_return;
    auto edge_connection = std::make_shared<emulator::QuicEdgeConnection>(connection);
    auto id = next_++;
    auto session =
        std::make_unique<emulator::EdgeRpcSession>(loop_, registry_, control, edge_connection);
    auto disconnected = session->OnDisconnect();
    sessions_[id] = Held{std::move(session), std::move(edge_connection)};
    // A session is not destroyed from inside its own continuation: deferred.
    loop_.WhenSettled(std::move(disconnected),
                      [this, id] { asio::post(io_, [this, id] { sessions_.erase(id); }); });
  }

  asio::io_context& io_;
  AsioKjLoop& loop_;
  emulator::TunnelRegistry registry_;
  quic::QuicServer listener_;
  QuickTunnel tunnel_;
  std::weak_ptr<quic::QuicConnection> latest_;
  std::map<std::uint64_t, Held> sessions_;
  std::uint64_t next_ = 0;
};

RegistrationRequest Request(const QuickTunnel& tunnel, const Uuid& client_id) {
  RegistrationRequest request;
  request.credentials = tunnel.credentials;
  request.conn_index = 0;
  request.options.client.client_id = client_id;
  request.options.client.features = DefaultClientFeatures();
  request.options.client.version = "churn";
  request.options.client.arch = "linux_amd64";
  request.options.origin_local_ip = IpTo16Bytes("127.0.0.1");
  return request;
}

// Runs the io_context until `done()` or `limit`.
template <typename Done>
bool RunUntil(asio::io_context& io, Done done, std::chrono::milliseconds limit) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (!done() && std::chrono::steady_clock::now() < until) {
    io.restart();
    io.run_for(10ms);
  }
  return done();
}

TEST(CloudflareChurn, FiveHundredConnectRegisterCloseCyclesLeaveNothingAlive) {
  ASSERT_EQ(quic::QuicConnection::live(), 0u);
  long warm_kib = 0;
  long end_kib = 0;
  int registered = 0;
  int rpc_streams = 0;
  const auto started = std::chrono::steady_clock::now();
  {
    asio::io_context io;
    AsioKjLoop loop(io);
    Edge edge(io, loop);
    origin::Service hello;
    hello.kind = origin::Service::Kind::kHelloWorld;
    hello.text = "hello_world";
    origin::OriginProxy proxy(io.get_executor(), origin::Router::CatchAll(hello));
    session::DrainTracker drain(io.get_executor());
    EdgeStreamServer server(proxy, loop, drain, EdgeStreamMetrics{}, spdlog::default_logger(),
                            EdgeStreamServer::Options{});
    EdgeAddress address;
    address.host = "127.0.0.1";
    address.port = std::to_string(edge.port());
    EdgeDialOptions dial;
    dial.ca_file = quic::test::Pki().ca_pem;
    const Uuid client_id = RandomUuid();

    quic::test::RunWithDeadline(
        io,
        [&]() -> asio::awaitable<void> {
          auto ex = co_await asio::this_coro::executor;
          for (int cycle = 0; cycle < kCycles; ++cycle) {
            if (cycle == kWarmupCycles) warm_kib = tunnelkit::test::ResidentKib();
            auto link = co_await DialEdge(ex, address, dial);
            link->SetStreamHandler([&](std::shared_ptr<Stream> stream) {
              asio::co_spawn(io, server.Serve(std::move(stream), 0), asio::detached);
            });
            auto control = co_await link->OpenControlStream();
            {
              RegistrationClient rpc(loop, control, 5s);
              auto result = co_await rpc.Register(Request(edge.tunnel(), client_id));
              EXPECT_TRUE(result.registered) << "cycle " << cycle << ": " << result.error.cause;
              if (!result.registered) co_return;
              ++registered;
              if (cycle % kRpcStreamEvery == 0) {
                if (auto edge_side = edge.latest()) {
                  co_await quic::test::CallCloudflaredServer(*edge_side, loop);
                  ++rpc_streams;
                }
              }
              co_await rpc.Unregister(5s);
            }
            link->Close();
          }
        },
        120s);
    // Closed on both sides once the CONNECTION_CLOSEs and stream ends went through.
    EXPECT_TRUE(RunUntil(
        io,
        [&] {
          return quic::QuicConnection::live() == 0 && edge.sessions() == 0 && loop.adopted() == 0 &&
                 drain.in_flight() == 0;
        },
        10s))
        << quic::QuicConnection::live() << " QUIC connections, " << edge.sessions()
        << " edge RPC sessions, " << loop.adopted() << " client RPC sessions, " << drain.in_flight()
        << " streams in flight";
    EXPECT_EQ(quic::detail::StreamState::live(), 0u);
    EXPECT_EQ(edge.registrations(), 0u);
    end_kib = tunnelkit::test::ResidentKib();
    edge.Close();
  }
  EXPECT_EQ(registered, kCycles);
  EXPECT_EQ(rpc_streams, kCycles / kRpcStreamEvery);
  EXPECT_EQ(quic::QuicConnection::live(), 0u);
  EXPECT_EQ(quic::detail::StreamState::live(), 0u);
  const auto seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::cout << kCycles << " cycles in " << seconds << " s; resident " << warm_kib << " -> "
            << end_kib << " KiB after the warm-up\n";
  if (tunnelkit::test::kAddressSanitizer) GTEST_SKIP() << tunnelkit::test::kMemoryBoundUnderAsan;
  // 450 cycles that each leaked a connection (its TLS session, UDP buffers and stream states,
  // about 300 KiB) would add over 100 MiB; allocator noise stays within a few MiB.
  EXPECT_LT(end_kib - warm_kib, 8 * 1024) << "KiB of resident memory gained over 450 cycles";
}

}  // namespace
}  // namespace tunnelkit::cloudflare
