// Traffic through a quick tunnel, end to end with real processes on loopback:
// visitor -> cfedge's public HTTP listener -> QUIC data stream -> tunnelctl (cloudflare backend)
// -> origin. Bodies by SHA-256, concurrency, server-sent events one by one, WebSocket, TCP, HA
// with one connection killed, cfedge restarted, graceful shutdown during a slow request, and the
// admin endpoints (/ready, /quicktunnel, /metrics) and --url-file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include "http_client.hpp"
#include "process.hpp"
#include "tunnelkit/hello/hello_server.hpp"

namespace {

using tunnelkit::test::ChildProcess;
using tunnelkit::test::HttpReply;
using tunnelkit::test::HttpRequest;
using tunnelkit::test::HttpRequestSpec;
using tunnelkit::test::RunProcess;
using tunnelkit::test::Sha256Hex;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

std::string CfedgePath() {
  return (fs::path(TUNNELCTL_PATH).parent_path() / "cfedge").string();
}

std::string Field(const std::string& output, const std::string& label) {
  std::smatch match;
  if (std::regex_search(output, match, std::regex("(^|\n)" + label + " ([^\n]+)"))) return match[2];
  return {};
}

int PortOf(const std::string& address) {
  auto colon = address.rfind(':');
  return colon == std::string::npos ? 0 : std::stoi(address.substr(colon + 1));
}

// A private temp folder per test, removed at the end.
struct TempDir {
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "tk-cftraffic-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp");
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
  fs::path path;
};

// The bytes hello's /bytes/N sends, to compare against.
std::string PatternBytes(std::size_t n) {
  std::string out(n, '\0');
  tunnelkit::hello::PatternBytes(0, reinterpret_cast<unsigned char*>(out.data()), n);
  return out;
}

struct Edge {
  ChildProcess process;
  std::string api;                // http://127.0.0.1:PORT
  std::vector<std::string> quic;  // 127.0.0.1:PORT each
  int http_port = 0;
};

class CloudflareTraffic : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(CfedgePath())) GTEST_FAIL() << "cfedge not built: " << CfedgePath();
  }
  void TearDown() override {
    if (HasFailure()) {
      std::cerr << "---- cfedge\n"
                << edge_.process.Output() << "\n---- client\n"
                << client_.Output() << "\n";
    }
    if (client_.Running()) client_.Stop(SIGKILL);
    if (edge_.process.Running()) edge_.process.Stop(SIGTERM);
  }

  // cfedge with its CA written to the temp dir; `extra` flags appended.
  void StartEdge(std::vector<std::string> extra = {}, int quic_listeners = 1) {
    std::vector<std::string> argv = {CfedgePath(), "--api-listen", "127.0.0.1:0", "--http-listen",
                                     "127.0.0.1:0"};
    for (int i = 0; i < quic_listeners; ++i)
      argv.insert(argv.end(), {"--quic-listen", "127.0.0.1:0"});
    if (std::find(extra.begin(), extra.end(), "--ca-cert") == extra.end())
      argv.insert(argv.end(), {"--write-ca", dir_ / "ca.pem"});
    argv.insert(argv.end(), extra.begin(), extra.end());
    edge_ = Edge{};
    edge_.process = ChildProcess(argv);
    ASSERT_TRUE(edge_.process.WaitForOutput("ready", 20s)) << edge_.process.Output();
    std::string out = edge_.process.Output();
    edge_.api = Field(out, "api");
    edge_.http_port = PortOf(Field(out, "http"));
    std::regex quic("edge quic ([^\n]+)");
    for (std::sregex_iterator it(out.begin(), out.end(), quic), end; it != end; ++it)
      edge_.quic.push_back((*it)[1]);
    ASSERT_EQ(static_cast<int>(edge_.quic.size()), quic_listeners) << out;
  }

  // tunnelctl against the edge; waits for `registered` connections.
  void StartClient(const std::string& url, std::vector<std::string> extra = {},
                   int registered = 1) {
    std::vector<std::string> argv = {
        TUNNELCTL_PATH, "--backend", "cloudflare",    "--url",          url,  "--quick-service",
        edge_.api,      "--edge-ca", dir_ / "ca.pem", "--grace-period", "5s", "--metrics",
        "127.0.0.1:0"};
    for (const auto& q : edge_.quic) argv.insert(argv.end(), {"--edge", q});
    argv.insert(argv.end(), extra.begin(), extra.end());
    client_ = ChildProcess(argv);
    for (int i = 0; i < registered; ++i) {
      ASSERT_TRUE(client_.WaitForOutput("connection " + std::to_string(i) + " registered", 20s))
          << client_.Output();
    }
    std::smatch match;
    std::string out = client_.Output();
    ASSERT_TRUE(
        std::regex_search(out, match, std::regex("https://([a-z0-9-]+\\.trycloudflare\\.com)")))
        << out;
    host_ = match[1];
    ASSERT_TRUE(client_.WaitForOutput("admin listening on", 5s)) << client_.Output();
    std::smatch admin;
    std::string log = client_.Output();
    ASSERT_TRUE(std::regex_search(log, admin, std::regex("admin listening on [0-9.]+:([0-9]+)")))
        << log;
    admin_port_ = std::stoi(admin[1]);
  }

  HttpReply Visit(const std::string& method, const std::string& target, std::string body = {}) {
    HttpRequestSpec spec;
    spec.method = method;
    spec.target = target;
    spec.host = host_;
    spec.body = std::move(body);
    return HttpRequest(edge_.http_port, spec);
  }

  HttpReply Admin(const std::string& target) {
    HttpRequestSpec spec;
    spec.target = target;
    spec.host = "127.0.0.1";
    return HttpRequest(admin_port_, spec);
  }

  TempDir dir_;
  Edge edge_;
  ChildProcess client_;
  std::string host_;
  int admin_port_ = 0;
};

TEST_F(CloudflareTraffic, GetAndPostFiftyMegabytesBySha256) {
  StartEdge();
  StartClient("hello_world");
  constexpr std::size_t kSize = 50u * 1024 * 1024;
  HttpReply get = Visit("GET", "/bytes/" + std::to_string(kSize));
  ASSERT_EQ(get.error, "");
  EXPECT_EQ(get.status, 200);
  EXPECT_EQ(get.body.size(), kSize);
  EXPECT_EQ(Sha256Hex(get.body), Sha256Hex(PatternBytes(kSize)));
  std::string upload = PatternBytes(kSize);
  upload[12345] ^= 0x5a;  // not the GET body
  HttpReply post = Visit("POST", "/echo", upload);
  ASSERT_EQ(post.error, "");
  EXPECT_EQ(post.status, 200);
  EXPECT_EQ(Sha256Hex(post.body), Sha256Hex(upload));
}

TEST_F(CloudflareTraffic, TwoHundredConcurrentRequests) {
  StartEdge();
  StartClient("hello_world");
  constexpr int kRequests = 200;
  std::vector<std::thread> threads;
  std::vector<HttpReply> replies(kRequests);
  for (int i = 0; i < kRequests; ++i) {
    threads.emplace_back([&, i] {
      replies[static_cast<std::size_t>(i)] = Visit("POST", "/echo", "request " + std::to_string(i));
    });
  }
  for (auto& t : threads) t.join();
  int ok = 0;
  for (int i = 0; i < kRequests; ++i) {
    const auto& r = replies[static_cast<std::size_t>(i)];
    if (r.status == 200 && r.body == "request " + std::to_string(i)) {
      ++ok;
    } else {
      ADD_FAILURE() << "request " << i << ": status " << r.status << " error " << r.error
                    << " body " << r.body.substr(0, 200);
    }
  }
  EXPECT_EQ(ok, kRequests);
}

TEST_F(CloudflareTraffic, ServerSentEventsArriveOneByOne) {
  StartEdge();
  StartClient("hello_world");
  HttpReply sse = Visit("GET", "/sse?n=5&interval_ms=200");
  ASSERT_EQ(sse.error, "");
  EXPECT_EQ(sse.status, 200);
  EXPECT_EQ(sse.Header("Content-Type").rfind("text/event-stream", 0), 0u);
  EXPECT_NE(sse.body.find("data: tick 5"), std::string::npos) << sse.body;
  // Five events 200 ms apart: the visitor sees them as separate reads spread over ~800 ms, not
  // one buffered burst at the end.
  ASSERT_GE(sse.arrivals_ms.size(), 5u) << sse.body;
  EXPECT_GE(sse.arrivals_ms.back() - sse.arrivals_ms.front(), 600.0);
  EXPECT_LT(sse.arrivals_ms.front(), 400.0) << "the first event waited for later ones";
}

TEST_F(CloudflareTraffic, WebSocketEcho) {
  StartEdge();
  StartClient("hello_world");
  std::string error;
  auto replies = tunnelkit::test::WebSocketExchange(
      edge_.http_port, host_, "/ws", {"first", std::string(100000, 'w'), "last"}, error);
  EXPECT_EQ(error, "");
  ASSERT_EQ(replies.size(), 3u);
  EXPECT_EQ(replies[0], "first");
  EXPECT_EQ(replies[1], std::string(100000, 'w'));
  EXPECT_EQ(replies[2], "last");
}

// A TCP echo origin on its own thread.
class TcpEcho {
 public:
  TcpEcho() : acceptor_(io_, {boost::asio::ip::make_address("127.0.0.1"), 0}) {
    thread_ = std::thread([this] {
      boost::system::error_code ec;
      auto socket = acceptor_.accept(ec);
      if (ec) return;
      std::vector<char> buf(65536);
      for (;;) {
        std::size_t n = socket.read_some(boost::asio::buffer(buf), ec);
        if (ec) break;
        boost::asio::write(socket, boost::asio::buffer(buf.data(), n), ec);
        if (ec) break;
      }
      socket.shutdown(boost::asio::ip::tcp::socket::shutdown_send, ec);
    });
  }
  ~TcpEcho() {
    boost::system::error_code ec;
    acceptor_.close(ec);
    ::shutdown(acceptor_.native_handle(), SHUT_RDWR);
    thread_.join();
  }
  int port() const { return acceptor_.local_endpoint().port(); }

 private:
  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::thread thread_;
};

TEST_F(CloudflareTraffic, TcpThroughTheEdge) {
  TcpEcho echo;
  int ingress = tunnelkit::test::FreeTcpPort();
  StartEdge({"--tcp-ingress", "127.0.0.1:" + std::to_string(ingress)});
  StartClient("tcp://127.0.0.1:" + std::to_string(echo.port()));
  boost::asio::io_context io;
  boost::asio::ip::tcp::socket s(io);
  boost::system::error_code ec;
  s.connect({boost::asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(ingress)}, ec);
  ASSERT_FALSE(ec) << ec.message();
  timeval tv{10, 0};
  setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string payload = PatternBytes(1 << 20);
  std::thread writer([&] {
    boost::system::error_code wec;
    boost::asio::write(s, boost::asio::buffer(payload), wec);
    s.shutdown(boost::asio::ip::tcp::socket::shutdown_send, wec);
  });
  std::string got;
  std::vector<char> buf(65536);
  for (;;) {
    std::size_t n = s.read_some(boost::asio::buffer(buf), ec);
    if (ec) break;
    got.append(buf.data(), n);
  }
  writer.join();
  EXPECT_EQ(ec, boost::asio::error::eof) << ec.message();
  EXPECT_EQ(Sha256Hex(got), Sha256Hex(payload));
}

TEST_F(CloudflareTraffic, OneOfTwoHaConnectionsKilledWhileRequestsKeepSucceeding) {
  StartEdge({"--location", "lhr01", "--location", "ams07"}, 2);
  StartClient("hello_world", {"--ha-connections", "2"}, 2);
  std::string out = client_.Output();
  // Each connection went to its own edge address.
  EXPECT_NE(out.find("connection 0 registered: location=lhr01"), std::string::npos) << out;
  EXPECT_NE(out.find("edge=" + edge_.quic[0]), std::string::npos) << out;
  EXPECT_NE(out.find("edge=" + edge_.quic[1]), std::string::npos) << out;

  std::atomic<bool> done{false};
  std::atomic<int> ok{0};
  std::vector<std::string> failures;
  std::mutex failures_mutex;
  std::thread visitor([&] {
    int i = 0;
    while (!done) {
      HttpReply r = Visit("POST", "/echo", "ha " + std::to_string(i));
      if (r.status == 200 && r.body == "ha " + std::to_string(i)) {
        ++ok;
      } else {
        std::lock_guard lock(failures_mutex);
        failures.push_back(std::to_string(r.status) + " " + r.error + " " + r.body.substr(0, 100));
      }
      ++i;
      std::this_thread::sleep_for(20ms);
    }
  });
  std::this_thread::sleep_for(300ms);
  HttpRequestSpec drop;
  drop.method = "POST";
  drop.target = "/cfedge/drop?conn_index=1";
  drop.host = "127.0.0.1";
  HttpReply dropped = HttpRequest(PortOf(edge_.api), drop);
  EXPECT_EQ(dropped.status, 200) << dropped.error << dropped.body;
  EXPECT_TRUE(client_.WaitForOutput("connection 1 to the edge was lost", 10s)) << client_.Output();
  // The supervisor brings it back (first retry waits at most 1 s).
  std::size_t before = client_.Output().find("connection 1 to the edge was lost");
  bool back = false;
  for (int i = 0; i < 100 && !back; ++i) {
    std::string now = client_.Output();
    back = now.find("connection 1 registered", before) != std::string::npos;
    if (!back) std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(back) << client_.Output();
  std::this_thread::sleep_for(300ms);
  done = true;
  visitor.join();
  EXPECT_GT(ok.load(), 10);
  // The drop is abrupt (the edge closes the QUIC connection), so the one request the visitor
  // may have in flight on connection 1 at that moment fails, as it would at Cloudflare: a 502
  // before the response head, a cut body after it. Under ASan a request lasts long enough for
  // that to happen often. Every other request, before and after, must succeed: the edge sends
  // requests to the live connection at once.
  ASSERT_LE(failures.size(), 1u) << failures.size() << " failed, first: " << failures.front();
  if (!failures.empty()) {
    const std::string edge_log = edge_.process.Output();
    bool cut_on_dropped = false;  // an edge log line of a request on connection 1 that failed
    std::istringstream lines(edge_log);
    for (std::string line; std::getline(lines, line);) {
      if (line.find("conn_index=1 ") != std::string::npos &&
          (line.find(" error=") != std::string::npos || line.find(" cut=") != std::string::npos)) {
        cut_on_dropped = true;
      }
    }
    EXPECT_TRUE(cut_on_dropped) << "the failed request was not in flight on the dropped "
                                << "connection: " << failures.front() << "\n"
                                << edge_log;
  }
  HttpReply metrics = Admin("/metrics");
  EXPECT_NE(metrics.body.find(
                "tunnelkit_edge_reconnects_total{tunnel=\"cloudflare\",conn_index=\"1\"} 1"),
            std::string::npos)
      << metrics.body;
}

TEST_F(CloudflareTraffic, CfedgeRestartedAndTheTunnelRegistersAgain) {
  // A fixed CA, state file and ports, so the restarted edge is the same edge.
  ASSERT_EQ(RunProcess({"openssl",
                        "req",
                        "-x509",
                        "-newkey",
                        "ec",
                        "-pkeyopt",
                        "ec_paramgen_curve:prime256v1",
                        "-nodes",
                        "-keyout",
                        dir_ / "ca.key",
                        "-out",
                        dir_ / "ca.pem",
                        "-days",
                        "2",
                        "-subj",
                        "/CN=restart test CA",
                        "-addext",
                        "basicConstraints=critical,CA:TRUE",
                        "-addext",
                        "keyUsage=critical,keyCertSign,cRLSign"})
                .exit_status,
            0);
  int api = tunnelkit::test::FreeTcpPort();
  int http = tunnelkit::test::FreeTcpPort();
  int quic = tunnelkit::test::FreeUdpPort();
  std::vector<std::string> argv = {CfedgePath(),
                                   "--api-listen",
                                   "127.0.0.1:" + std::to_string(api),
                                   "--http-listen",
                                   "127.0.0.1:" + std::to_string(http),
                                   "--quic-listen",
                                   "127.0.0.1:" + std::to_string(quic),
                                   "--ca-cert",
                                   dir_ / "ca.pem",
                                   "--ca-key",
                                   dir_ / "ca.key",
                                   "--state",
                                   dir_ / "state.json"};
  edge_.process = ChildProcess(argv);
  ASSERT_TRUE(edge_.process.WaitForOutput("ready", 20s)) << edge_.process.Output();
  edge_.api = "http://127.0.0.1:" + std::to_string(api);
  edge_.http_port = http;
  edge_.quic = {"127.0.0.1:" + std::to_string(quic)};
  StartClient("hello_world");
  EXPECT_EQ(Visit("GET", "/status/200").status, 200);
  EXPECT_EQ(edge_.process.Stop(SIGTERM), 0);
  EXPECT_TRUE(client_.WaitForOutput("connection 0 to the edge was lost", 10s)) << client_.Output();
  edge_.process = ChildProcess(argv);
  ASSERT_TRUE(edge_.process.WaitForOutput("ready", 20s)) << edge_.process.Output();
  EXPECT_TRUE(edge_.process.WaitForOutput("registered tunnel=", 40s)) << client_.Output();
  HttpReply again = Visit("GET", "/status/200");
  EXPECT_EQ(again.status, 200) << again.error << again.body;
  EXPECT_TRUE(client_.Running());
}

TEST_F(CloudflareTraffic, ShutdownDuringASlowRequestLetsItComplete) {
  StartEdge();
  StartClient("hello_world");
  HttpReply slow;
  std::thread visitor([&] { slow = Visit("GET", "/sse?n=6&interval_ms=250"); });
  std::this_thread::sleep_for(400ms);
  auto started = std::chrono::steady_clock::now();
  EXPECT_EQ(client_.Stop(SIGTERM, 15s), 0) << client_.Output();
  visitor.join();
  EXPECT_EQ(slow.status, 200);
  EXPECT_EQ(slow.error, "");
  EXPECT_NE(slow.body.find("data: tick 6"), std::string::npos) << slow.body;
  // The client waited for the request, not for the whole grace period (5 s).
  EXPECT_LT(std::chrono::steady_clock::now() - started, 4500ms);
  std::string out = client_.Output();
  EXPECT_NE(out.find("connection 0 unregistered"), std::string::npos) << out;
  EXPECT_NE(out.find("drained 1 request(s)"), std::string::npos) << out;
}

TEST_F(CloudflareTraffic, ReadyQuicktunnelMetricsAndUrlFile) {
  StartEdge();
  std::string url_file = dir_ / "url.txt";
  StartClient("hello_world", {"--url-file", url_file});
  std::ifstream in(url_file);
  std::string url;
  std::getline(in, url);
  EXPECT_EQ(url, "https://" + host_);
  HttpReply ready = Admin("/ready");
  EXPECT_EQ(ready.status, 200);
  EXPECT_NE(ready.body.find("\"readyConnections\":1"), std::string::npos) << ready.body;
  HttpReply quick = Admin("/quicktunnel");
  EXPECT_EQ(quick.body, "{\"hostname\":\"" + host_ + "\"}");
  EXPECT_EQ(Visit("GET", "/status/201").status, 201);
  EXPECT_EQ(Visit("POST", "/echo", std::string(1000, 'x')).status, 200);
  std::string metrics = Admin("/metrics").body;
  for (const char* expected : {"tunnelkit_edge_connections{tunnel=\"cloudflare\"} 1",
                               "tunnelkit_streams_total{tunnel=\"cloudflare\",type=\"http\"} 2",
                               "tunnelkit_responses_total{tunnel=\"cloudflare\",code=\"201\"} 1",
                               "tunnelkit_request_duration_seconds_count{tunnel=\"cloudflare\"} 2",
                               "tunnelkit_active_streams{tunnel=\"cloudflare\"} 0"}) {
    EXPECT_NE(metrics.find(expected), std::string::npos) << expected << "\n" << metrics;
  }
  std::smatch received;
  ASSERT_TRUE(std::regex_search(
      metrics, received,
      std::regex("tunnelkit_received_bytes_total\\{tunnel=\"cloudflare\"\\} ([0-9]+)")));
  EXPECT_GE(std::stoull(received[1]), 1000u);
  EXPECT_EQ(client_.Stop(SIGINT, 15s), 0);
  EXPECT_FALSE(fs::exists(url_file)) << "the URL file outlived the tunnel";
}

TEST_F(CloudflareTraffic, GivesUpWithExitFourAfterTheRetries) {
  StartEdge();
  StartClient("hello_world", {"--retries", "1"});
  edge_.process.Stop(SIGKILL);
  // Loss is noticed by the idle timeout (5 s), then one retry fails and the process exits.
  auto status = client_.Wait(40s);
  ASSERT_TRUE(status.has_value()) << client_.Output();
  EXPECT_EQ(*status, 4) << client_.Output();
  EXPECT_NE(client_.Output().find("gave up after 1 retries"), std::string::npos)
      << client_.Output();
}

}  // namespace
