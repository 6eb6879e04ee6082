// The admin endpoint over real HTTP connections on 127.0.0.1 with ephemeral ports.
#include "tunnelkit/admin/admin_server.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <future>
#include <sstream>
#include <thread>

#include <spdlog/spdlog.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <nlohmann/json.hpp>

#include "process.hpp"
#include "tunnelkit/logging.hpp"
#include "tunnelkit/metrics/registry.hpp"
#include "tunnelkit/runtime.hpp"

namespace tunnelkit::admin {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

struct HttpReply {
  int status = 0;
  std::string headers;
  std::string body;
};

// One request with "Connection: close", read to EOF, with a receive timeout on the socket.
HttpReply Get(unsigned short port, const std::string& target, const std::string& method = "GET") {
  asio::io_context io;
  tcp::socket socket(io);
  socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  timeval tv{5, 0};
  ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  const std::string request =
      method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  asio::write(socket, asio::buffer(request));
  std::string raw;
  boost::system::error_code ec;
  asio::read(socket, asio::dynamic_buffer(raw), ec);
  HttpReply reply;
  auto head_end = raw.find("\r\n\r\n");
  if (head_end == std::string::npos) return reply;
  reply.headers = raw.substr(0, head_end);
  reply.body = raw.substr(head_end + 4);
  reply.status = std::stoi(raw.substr(9, 3));
  return reply;
}

// An io_context running on its own thread for the server.
class Loop {
 public:
  explicit Loop(asio::io_context& io) : io_(io), guard_(asio::make_work_guard(io)) {
    thread_ = std::thread([this] { io_.run(); });
  }
  ~Loop() { Join(); }
  // Runs `fn` on the loop and waits for it.
  template <typename Fn>
  void Sync(Fn fn) {
    std::promise<void> done;
    asio::post(io_, [&] {
      fn();
      done.set_value();
    });
    done.get_future().wait();
  }
  void Join() {
    guard_.reset();
    if (thread_.joinable()) thread_.join();
  }

 private:
  asio::io_context& io_;
  asio::executor_work_guard<asio::io_context::executor_type> guard_;
  std::thread thread_;
};

TEST(AdminServer, ServesMetricsHealthReadyAnd404) {
  asio::io_context io;
  metrics::Registry registry;
  registry.AddCounter("scrapes_test_total", "A test counter.", {"k"}).With({"v"}).Inc(42);
  AdminServer server(io, registry, nullptr);
  std::atomic<bool> ready{false};
  server.SetReadiness([&] { return Readiness{ready.load(), ready ? 4u : 0u}; });
  ASSERT_EQ(server.Listen("127.0.0.1:0"), "");
  const auto port = server.endpoint().port();
  ASSERT_NE(port, 0);
  Loop loop(io);

  auto m = Get(port, "/metrics");
  EXPECT_EQ(m.status, 200);
  EXPECT_NE(m.headers.find("Content-Type: text/plain; version=0.0.4"), std::string::npos)
      << m.headers;
  EXPECT_EQ(m.body, registry.Expose());
  EXPECT_NE(m.body.find("scrapes_test_total{k=\"v\"} 42\n"), std::string::npos) << m.body;

  auto h = Get(port, "/healthz");
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.body, "ok");

  auto not_ready = Get(port, "/ready");
  EXPECT_EQ(not_ready.status, 503);
  EXPECT_EQ(not_ready.body, "{\"status\":503,\"readyConnections\":0}");
  ready = true;
  auto is_ready = Get(port, "/ready?verbose=1");
  EXPECT_EQ(is_ready.status, 200);
  EXPECT_EQ(is_ready.body, "{\"status\":200,\"readyConnections\":4}");
  EXPECT_NE(is_ready.headers.find("Content-Type: application/json"), std::string::npos);

  EXPECT_EQ(Get(port, "/nope").status, 404);
  EXPECT_EQ(Get(port, "/metrics", "POST").status, 405);
  auto head = Get(port, "/healthz", "HEAD");
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.body, "");

  loop.Sync([&] { server.Stop(); });
  loop.Join();
}

TEST(AdminServer, KeepAliveServesSeveralRequestsOnOneConnection) {
  asio::io_context io;
  metrics::Registry registry;
  AdminServer server(io, registry, nullptr);
  ASSERT_EQ(server.Listen("127.0.0.1:0"), "");
  Loop loop(io);
  asio::io_context client_io;
  tcp::socket socket(client_io);
  socket.connect(server.endpoint());
  timeval tv{5, 0};
  ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  const std::string two =
      "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
      "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  asio::write(socket, asio::buffer(two));
  std::string raw;
  boost::system::error_code ec;
  asio::read(socket, asio::dynamic_buffer(raw), ec);
  std::size_t count = 0;
  for (auto pos = raw.find("HTTP/1.1 200"); pos != std::string::npos;
       pos = raw.find("HTTP/1.1 200", pos + 1))
    ++count;
  EXPECT_EQ(count, 2u) << raw;
  loop.Sync([&] { server.Stop(); });
}

TEST(AdminServer, RefusesOversizedHeadersAndStopClosesConnections) {
  asio::io_context io;
  metrics::Registry registry;
  AdminServer server(io, registry, nullptr);
  ASSERT_EQ(server.Listen("127.0.0.1:0"), "");
  Loop loop(io);
  asio::io_context client_io;
  tcp::socket big(client_io);
  big.connect(server.endpoint());
  timeval tv{5, 0};
  ::setsockopt(big.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  const std::string request =
      "GET /healthz HTTP/1.1\r\nX-Big: " + std::string(20000, 'a') + "\r\n\r\n";
  boost::system::error_code ec;
  asio::write(big, asio::buffer(request), ec);
  std::string raw;
  asio::read(big, asio::dynamic_buffer(raw), ec);
  EXPECT_EQ(raw.find("200 OK"), std::string::npos) << raw.substr(0, 100);  // closed, no answer

  // An idle open connection is closed by Stop (read sees EOF, not the 5 s timeout).
  tcp::socket idle(client_io);
  idle.connect(server.endpoint());
  ::setsockopt(idle.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  loop.Sync([&] { server.Stop(); });
  const auto start = std::chrono::steady_clock::now();
  char byte;
  auto n = idle.read_some(asio::buffer(&byte, 1), ec);
  EXPECT_EQ(n, 0u);
  EXPECT_EQ(ec, asio::error::eof);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
  // And nothing listens any more.
  tcp::socket late(client_io);
  late.connect(server.endpoint(), ec);
  EXPECT_TRUE(ec);
}

TEST(AdminServer, BindFailureIsOneLine) {
  asio::io_context io;
  metrics::Registry registry;
  tcp::acceptor taken(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  AdminServer server(io, registry, nullptr);
  const auto address = "127.0.0.1:" + std::to_string(taken.local_endpoint().port());
  const auto error = server.Listen(address);
  EXPECT_EQ(error.rfind("cannot listen on " + address + ": ", 0), 0u) << error;
  EXPECT_NE(error.find("in use"), std::string::npos) << error;
  EXPECT_EQ(error.find('\n'), std::string::npos);
  EXPECT_EQ(server.Listen("127.0.0.1:70000"), "127.0.0.1:70000: port out of range 0..65535");
}

TEST(RuntimeAdmin, TunnelsReadinessRoutesAndStop) {
  config::v1::Tunnel config;
  config.set_id("app");
  config.set_backend("ferro");
  config.set_mode("serve");
  config.set_metrics("127.0.0.1:0");
  Runtime runtime(config, logging::MakeLogger("app"));
  runtime.AddAdminRoute("/quicktunnel",
                        [] { return std::string("{\"hostname\":\"a-b-c.example.com\"}"); });
  runtime.SetReadiness([] { return Readiness{true, 1}; });
  runtime.SetDetails([] { return std::string("{\"connections\":2}"); });
  runtime.metrics().AddCounter("runtime_test_total", "t").With({}).Inc();
  ASSERT_EQ(runtime.StartAdmin(), "");
  ASSERT_NE(runtime.admin(), nullptr);
  const auto port = runtime.admin()->endpoint().port();
  std::thread loop([&] { runtime.io().run(); });

  auto quick = Get(port, "/quicktunnel");
  EXPECT_EQ(quick.status, 200);
  EXPECT_EQ(nlohmann::json::parse(quick.body)["hostname"], "a-b-c.example.com");
  EXPECT_EQ(Get(port, "/ready").status, 200);
  runtime.SetState("serving");
  auto tunnels = nlohmann::json::parse(Get(port, "/tunnels").body);
  ASSERT_EQ(tunnels.size(), 1u);
  EXPECT_EQ(tunnels[0]["id"], "app");
  EXPECT_EQ(tunnels[0]["backend"], "ferro");
  EXPECT_EQ(tunnels[0]["mode"], "serve");
  EXPECT_EQ(tunnels[0]["state"], "serving");
  EXPECT_EQ(tunnels[0]["details"]["connections"], 2);
  auto metrics = Get(port, "/metrics").body;
  EXPECT_NE(metrics.find("runtime_test_total 1\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("tunnelkit_build_info{version=\"" TUNNELKIT_VERSION_STRING
                         "\",backend=\"ferro\"} 1\n"),
            std::string::npos)
      << metrics;

  // A stop request closes the admin server, so the loop runs out of work and returns.
  asio::post(runtime.io(), [&] { runtime.RequestStop(); });
  loop.join();
  EXPECT_EQ(runtime.state(), "stopping");
}

TEST(RuntimeAdmin, NoAddressNoServerAndBindErrorsAreReported) {
  config::v1::Tunnel config;
  config.set_id("quiet");
  Runtime quiet(config, logging::MakeLogger("quiet"));
  EXPECT_EQ(quiet.StartAdmin(), "");
  EXPECT_EQ(quiet.admin(), nullptr);
  asio::io_context io;
  tcp::acceptor taken(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  config.set_metrics("127.0.0.1:" + std::to_string(taken.local_endpoint().port()));
  Runtime busy(config, logging::MakeLogger("busy"));
  EXPECT_NE(busy.StartAdmin().find("in use"), std::string::npos);
  EXPECT_EQ(busy.admin(), nullptr);
}

}  // namespace
}  // namespace tunnelkit::admin

namespace tunnelkit::admin {
namespace {

// The whole wiring through the real CLI: config -> logging (JSON) -> Runtime -> admin server
// on an ephemeral port -> backend registrations -> SIGTERM -> graceful exit.
TEST(TunnelctlAdmin, ServesTheRunningTunnelAndStopsOnSigterm) {
  test::ChildProcess child({TUNNELCTL_PATH, "--backend", "adminfixture", "--plugin-dir",
                            TUNNELKIT_TEST_PLUGIN_DIR, "--id", "e2e", "--metrics", "127.0.0.1:0",
                            "--log-format", "json"});
  ASSERT_TRUE(child.WaitForOutput("fixture running")) << child.Output();
  // Every line is a JSON object; one of them says where the admin server listens.
  unsigned short port = 0;
  std::istringstream lines(child.Output());
  for (std::string line; std::getline(lines, line);) {
    auto entry = nlohmann::json::parse(line);
    EXPECT_EQ(entry.size(), 4u) << line;
    const std::string msg = entry["msg"];
    const std::string prefix = "admin listening on 127.0.0.1:";
    if (msg.rfind(prefix, 0) == 0) {
      port = static_cast<unsigned short>(std::stoi(msg.substr(prefix.size())));
      EXPECT_EQ(entry["logger"], "e2e");
    }
  }
  ASSERT_NE(port, 0) << child.Output();

  auto metrics = Get(port, "/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.body.find("fixture_runs_total 1\n"), std::string::npos) << metrics.body;
  EXPECT_NE(metrics.body.find("tunnelkit_build_info{version=\"" TUNNELKIT_VERSION_STRING
                              "\",backend=\"adminfixture\"} 1\n"),
            std::string::npos)
      << metrics.body;
  auto ready = Get(port, "/ready");
  EXPECT_EQ(ready.status, 200);
  EXPECT_EQ(ready.body, "{\"status\":200,\"readyConnections\":2}");
  EXPECT_EQ(Get(port, "/healthz").body, "ok");
  auto tunnels = nlohmann::json::parse(Get(port, "/tunnels").body);
  ASSERT_EQ(tunnels.size(), 1u);
  EXPECT_EQ(tunnels[0]["id"], "e2e");
  EXPECT_EQ(tunnels[0]["backend"], "adminfixture");
  EXPECT_EQ(tunnels[0]["mode"], "run");
  EXPECT_EQ(tunnels[0]["state"], "connected");
  EXPECT_EQ(tunnels[0]["details"]["fixture"], true);
  EXPECT_EQ(nlohmann::json::parse(Get(port, "/quicktunnel").body)["hostname"],
            "fixture.example.com");
  EXPECT_EQ(Get(port, "/nope").status, 404);

  EXPECT_EQ(child.Stop(SIGTERM), 0) << child.Output();
  EXPECT_NE(child.Output().find("fixture drained"), std::string::npos) << child.Output();
}

}  // namespace
}  // namespace tunnelkit::admin
