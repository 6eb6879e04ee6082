// The ferro backend end to end with real processes: `tunnelctl serve --backend ferro`,
// `tunnelctl --backend ferro`, an origin run by this test (Beast, one thread per connection),
// and public HTTP, WebSocket and TCP clients. Loopback only, ephemeral ports.
#include <sys/socket.h>
#include <sys/time.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include <gtest/gtest.h>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include "process.hpp"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;
using tunnelkit::test::ChildProcess;
using tunnelkit::test::FreeTcpPort;
using tunnelkit::test::RunProcess;
using tunnelkit::test::Sha256Hex;
using namespace std::chrono_literals;

const std::string kTunnelctl = TUNNELCTL_PATH;

std::string Pattern(std::size_t size, std::uint32_t seed) {
  std::string out(size, '\0');
  std::mt19937 rng(seed);
  for (std::size_t i = 0; i < size; i += 4) {
    const std::uint32_t v = rng();
    for (std::size_t k = 0; k < 4 && i + k < size; ++k)
      out[i + k] = static_cast<char>(v >> (8 * k));
  }
  return out;
}

// The origin: GET /big/N -> N pattern bytes; POST /upload -> "size sha256"; GET /hello ->
// "hello"; WebSocket upgrade on /ws -> echo; anything else on the TCP port -> byte echo.
class Origin {
 public:
  explicit Origin(bool echo)
      : echo_(echo), acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    thread_ = std::thread([this] { AcceptLoop(); });
  }
  ~Origin() {
    stopping_ = true;
    boost::system::error_code ec;
    // Wake the blocking accept with a connection of our own.
    tcp::socket poke(io_);
    poke.connect(acceptor_.local_endpoint(), ec);
    thread_.join();
    {
      // Unblock every worker (the tunnel processes may still hold their connections open).
      std::lock_guard<std::mutex> lock(mutex_);
      for (int fd : open_fds_) ::shutdown(fd, SHUT_RDWR);
    }
    for (auto& t : workers_) t.join();
  }
  int port() const { return acceptor_.local_endpoint().port(); }

 private:
  void AcceptLoop() {
    while (!stopping_) {
      tcp::socket socket(io_);
      boost::system::error_code ec;
      acceptor_.accept(socket, ec);
      if (ec || stopping_) break;
      const int fd = socket.native_handle();
      {
        std::lock_guard<std::mutex> lock(mutex_);
        open_fds_.insert(fd);
      }
      workers_.emplace_back([this, fd, s = std::move(socket)]() mutable {
        if (echo_) {
          Echo(s);
        } else {
          Serve(s);
        }
        std::lock_guard<std::mutex> lock(mutex_);
        open_fds_.erase(fd);
        boost::system::error_code ignored;
        s.close(ignored);
      });
    }
  }

  static void Echo(tcp::socket& s) {
    char buf[65536];
    boost::system::error_code ec;
    for (;;) {
      const std::size_t n = s.read_some(asio::buffer(buf), ec);
      if (ec) break;
      asio::write(s, asio::buffer(buf, n), ec);
      if (ec) break;
    }
    s.shutdown(tcp::socket::shutdown_send, ec);
  }

  static void Serve(tcp::socket& s) {
    beast::flat_buffer buffer;
    boost::system::error_code ec;
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(200u * 1024 * 1024);
      http::read(s, buffer, parser, ec);
      if (ec) return;
      auto request = parser.release();
      if (beast::websocket::is_upgrade(request)) {
        beast::websocket::stream<tcp::socket&> ws(s);
        ws.accept(request, ec);
        while (!ec) {
          beast::flat_buffer message;
          ws.read(message, ec);
          if (ec) break;
          ws.binary(ws.got_binary());
          ws.write(message.data(), ec);
        }
        return;
      }
      http::response<http::string_body> response{http::status::ok, request.version()};
      const std::string target(request.target());
      if (target.rfind("/big/", 0) == 0) {
        response.body() = Pattern(std::stoul(target.substr(5)), 42);
      } else if (target == "/upload") {
        response.body() = std::to_string(request.body().size()) + " " + Sha256Hex(request.body());
      } else {
        response.body() = "hello from the origin, host " + std::string(request[http::field::host]);
      }
      response.keep_alive(request.keep_alive());
      response.prepare_payload();
      http::write(s, response, ec);
      if (ec || !request.keep_alive()) break;
    }
    s.shutdown(tcp::socket::shutdown_send, ec);
  }

  bool echo_;
  std::atomic<bool> stopping_{false};
  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::thread thread_;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::set<int> open_fds_;
};

struct HttpReply {
  int status = 0;
  std::string body;
  std::string error;
};

// One request on a fresh connection, read until the server closes (10 s receive timeout).
HttpReply Request(int port, const std::string& method, const std::string& target,
                  const std::string& host, const std::string& body = "") {
  asio::io_context io;
  tcp::socket s(io);
  HttpReply reply;
  boost::system::error_code ec;
  s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)),
            ec);
  if (ec) {
    reply.error = "connect: " + ec.message();
    return reply;
  }
  timeval tv{10, 0};
  setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  http::request<http::string_body> request{method == "POST" ? http::verb::post : http::verb::get,
                                           target, 11};
  request.set(http::field::host, host);
  request.body() = body;
  request.prepare_payload();
  http::write(s, request, ec);
  if (ec) {
    reply.error = "write: " + ec.message();
    return reply;
  }
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(200u * 1024 * 1024);
  http::read(s, buffer, parser, ec);
  if (ec) {
    reply.error = "read: " + ec.message();
    return reply;
  }
  reply.status = parser.get().result_int();
  reply.body = parser.get().body();
  return reply;
}

class FerroTunnel : public ::testing::Test {
 protected:
  void SetUp() override {
    control_port_ = FreeTcpPort();
    http_port_ = FreeTcpPort();
    tcp_port_ = FreeTcpPort();
  }

  void TearDown() override {
    if (HasFailure()) {
      std::cerr << "---- server log\n"
                << server_.Output() << "\n---- client log\n"
                << client_.Output() << "\n";
    }
  }

  std::vector<std::string> ServerArgs(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {kTunnelctl,  "serve",
                                     "--backend", "ferro",
                                     "--listen",  "127.0.0.1:" + std::to_string(control_port_),
                                     "--http",    "127.0.0.1:" + std::to_string(http_port_),
                                     "--tcp",     "127.0.0.1:" + std::to_string(tcp_port_),
                                     "--token",   "s3cret-token",
                                     "--domain",  "tunnels.test"};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }
  std::vector<std::string> ClientArgs(int origin_port, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {kTunnelctl,
                                     "--backend",
                                     "ferro",
                                     "--server",
                                     "127.0.0.1:" + std::to_string(control_port_),
                                     "--token",
                                     "s3cret-token",
                                     "--url",
                                     "http://127.0.0.1:" + std::to_string(origin_port),
                                     "--tunnel-id",
                                     "app",
                                     "--reconnect-base",
                                     "100ms",
                                     "--reconnect-cap",
                                     "500ms"};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }

  void StartServer(const std::vector<std::string>& extra = {}) {
    server_ = ChildProcess(ServerArgs(extra));
    ASSERT_TRUE(server_.WaitForOutput("listening for tunnel clients", 10s)) << server_.Output();
  }
  void StartClient(int origin_port, const std::vector<std::string>& extra = {}) {
    client_ = ChildProcess(ClientArgs(origin_port, extra));
    ASSERT_TRUE(client_.WaitForOutput("connected to", 10s)) << client_.Output();
    ASSERT_TRUE(server_.WaitForOutput("tunnel registered: app", 10s)) << server_.Output();
  }

  int control_port_ = 0;
  int http_port_ = 0;
  int tcp_port_ = 0;
  ChildProcess server_;
  ChildProcess client_;
};

TEST_F(FerroTunnel, GetAndPost50MegabytesCheckedBySha256) {
  Origin origin(false);
  StartServer();
  StartClient(origin.port());
  const std::size_t size = 50u * 1024 * 1024;
  HttpReply get = Request(http_port_, "GET", "/big/" + std::to_string(size), "app");
  ASSERT_EQ(get.status, 200) << get.error;
  EXPECT_EQ(get.body.size(), size);
  EXPECT_EQ(Sha256Hex(get.body), Sha256Hex(Pattern(size, 42)));

  const std::string upload = Pattern(size, 7);
  HttpReply post = Request(http_port_, "POST", "/upload", "app.tunnels.test", upload);
  ASSERT_EQ(post.status, 200) << post.error;
  EXPECT_EQ(post.body, std::to_string(size) + " " + Sha256Hex(upload));
}

TEST_F(FerroTunnel, HundredConcurrentRequests) {
  Origin origin(false);
  StartServer();
  StartClient(origin.port());
  std::vector<std::future<bool>> results;
  for (int i = 0; i < 100; ++i) {
    results.push_back(std::async(std::launch::async, [this, i] {
      const std::string body = Pattern(10000 + static_cast<std::size_t>(i) * 1000, i);
      HttpReply r = Request(http_port_, "POST", "/upload", "app", body);
      return r.status == 200 && r.body == std::to_string(body.size()) + " " + Sha256Hex(body);
    }));
  }
  int ok = 0;
  for (auto& r : results) ok += r.get() ? 1 : 0;
  EXPECT_EQ(ok, 100);
}

// HTTP streams are served by the core origin proxy: the Host rewrite of the core's
// origin_request settings and X-Forwarded-Proto reach the origin (tunnelctl hello, /headers),
// which a plain byte splice to --url could not do.
TEST_F(FerroTunnel, HttpGoesThroughTheCoreOriginProxy) {
  const int hello_port = FreeTcpPort();
  ChildProcess hello({kTunnelctl, "hello", "--listen", "127.0.0.1:" + std::to_string(hello_port)});
  ASSERT_TRUE(hello.WaitForOutput("listening", 10s)) << hello.Output();
  StartServer();
  StartClient(hello_port, {"--origin-request-http-host-header", "origin.internal"});
  HttpReply reply = Request(http_port_, "GET", "/headers", "app");
  ASSERT_EQ(reply.status, 200) << reply.error;
  EXPECT_NE(reply.body.find("Host: origin.internal"), std::string::npos) << reply.body;
  EXPECT_NE(reply.body.find("X-Forwarded-Proto: http"), std::string::npos) << reply.body;
  EXPECT_NE(reply.body.find("X-Forwarded-For: 127.0.0.1"), std::string::npos) << reply.body;
}

TEST_F(FerroTunnel, UnknownHostIs404AndHealthAnswers) {
  Origin origin(false);
  StartServer();
  StartClient(origin.port());
  HttpReply r = Request(http_port_, "GET", "/", "nobody.example");
  EXPECT_EQ(r.status, 404) << r.error;
  EXPECT_EQ(r.body, "Tunnel not found");
  r = Request(http_port_, "GET", "/health", "nobody.example");
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.body, "OK");
  r = Request(http_port_, "GET", "/hello", "APP:80");
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.body, "hello from the origin, host APP:80");
}

TEST_F(FerroTunnel, WebSocketEcho) {
  Origin origin(false);
  StartServer();
  StartClient(origin.port());
  asio::io_context io;
  beast::websocket::stream<tcp::socket> ws(io);
  ws.next_layer().connect(
      tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(http_port_)));
  timeval tv{10, 0};
  setsockopt(ws.next_layer().native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ws.handshake("app", "/ws");
  for (std::size_t size : {1u, 1000u, 200000u}) {
    const std::string message = Pattern(size, static_cast<std::uint32_t>(size));
    ws.binary(true);
    ws.write(asio::buffer(message));
    beast::flat_buffer reply;
    ws.read(reply);
    EXPECT_EQ(beast::buffers_to_string(reply.data()), message) << size;
  }
  ws.close(beast::websocket::close_code::normal);
}

// Sends `size` pattern bytes through the public TCP ingress to an echo origin and checks
// that the same bytes come back, ended by the half-close passed through.
void ExpectTcpEcho(int port, std::size_t size, unsigned seed) {
  asio::io_context io;
  tcp::socket s(io);
  s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)));
  timeval tv{10, 0};
  setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  const std::string payload = Pattern(size, seed);
  std::thread writer([&] {
    asio::write(s, asio::buffer(payload));
    s.shutdown(tcp::socket::shutdown_send);
  });
  std::string echoed;
  char buf[65536];
  boost::system::error_code ec;
  for (;;) {
    const std::size_t n = s.read_some(asio::buffer(buf), ec);
    if (ec) break;
    echoed.append(buf, n);
  }
  writer.join();
  EXPECT_EQ(ec, asio::error::eof);
  EXPECT_EQ(echoed.size(), payload.size());
  EXPECT_EQ(Sha256Hex(echoed), Sha256Hex(payload));
}

TEST_F(FerroTunnel, TcpEcho) {
  Origin origin(true);
  StartServer();
  StartClient(origin.port());
  ExpectTcpEcho(tcp_port_, 5u * 1024 * 1024 + 3, 9);
}

TEST_F(FerroTunnel, WrongTokenFailsClearlyWithoutLooping) {
  Origin origin(false);
  StartServer();
  auto args = ClientArgs(origin.port());
  args[6] = "not-the-token";
  auto result = RunProcess(args, 10s);
  EXPECT_FALSE(result.timed_out);
  EXPECT_NE(result.exit_status, 0);
  const std::string output = result.out + result.err;
  EXPECT_NE(output.find("InvalidToken"), std::string::npos) << output;
  EXPECT_NE(output.find("the token is wrong"), std::string::npos) << output;
  EXPECT_EQ(output.find("not-the-token"), std::string::npos) << "token leaked into the log";
  EXPECT_EQ(server_.Output().find("not-the-token"), std::string::npos);
  EXPECT_EQ(server_.Output().find("s3cret-token"), std::string::npos);
}

TEST_F(FerroTunnel, ClientReconnectsAfterServerRestart) {
  Origin origin(false);
  StartServer();
  StartClient(origin.port());
  EXPECT_EQ(Request(http_port_, "GET", "/hello", "app").status, 200);
  server_.Stop(SIGKILL);
  ASSERT_TRUE(client_.WaitForOutput("reconnecting in", 10s)) << client_.Output();
  server_ = ChildProcess(ServerArgs());
  ASSERT_TRUE(server_.WaitForOutput("tunnel registered: app", 15s)) << server_.Output();
  HttpReply r = Request(http_port_, "GET", "/hello", "app");
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.body, "hello from the origin, host app");
}

TEST_F(FerroTunnel, BadFlagsAreRefusedBeforeStarting) {
  auto result = RunProcess({kTunnelctl, "serve", "--backend", "ferro", "--listen",
                            "127.0.0.1:" + std::to_string(control_port_)},
                           10s);
  EXPECT_EQ(result.exit_status, 2);
  EXPECT_NE((result.out + result.err).find("ferro.token"), std::string::npos)
      << result.out << result.err;
}

// Certificates for the TLS tests, made with the openssl CLI in a temporary folder.
class FerroTls : public FerroTunnel {
 protected:
  void SetUp() override {
    FerroTunnel::SetUp();
    dir_ = std::filesystem::temp_directory_path() /
           ("ferro-tls-" + std::to_string(::getpid()) + "-" + std::to_string(control_port_));
    std::filesystem::create_directories(dir_);
    std::ofstream(dir_ / "server.ext") << "subjectAltName=DNS:localhost,IP:127.0.0.1\n";
    std::ofstream(dir_ / "client.ext") << "extendedKeyUsage=clientAuth\n";
    Openssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", P("ca.key"), "-out", P("ca.pem"), "-days", "2", "-subj",
             "/CN=ferro test CA"});
    for (const std::string name : {"server", "client"}) {
      Openssl({"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
               "-keyout", P(name + ".key"), "-out", P(name + ".csr"), "-subj", "/CN=" + name});
      Openssl({"x509", "-req", "-in", P(name + ".csr"), "-CA", P("ca.pem"), "-CAkey", P("ca.key"),
               "-CAcreateserial", "-out", P(name + ".pem"), "-days", "2", "-extfile",
               P(name + ".ext")});
    }
  }
  void TearDown() override {
    FerroTunnel::TearDown();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string P(const std::string& name) const { return (dir_ / name).string(); }
  void Openssl(std::vector<std::string> args) {
    args.insert(args.begin(), "openssl");
    auto r = RunProcess(args, 20s);
    ASSERT_EQ(r.exit_status, 0) << r.err;
  }
  std::filesystem::path dir_;
};

TEST_F(FerroTls, TlsVerifiedAgainstTheCa) {
  Origin origin(false);
  StartServer({"--tls-cert", P("server.pem"), "--tls-key", P("server.key")});
  StartClient(origin.port(), {"--tls", "--tls-ca", P("ca.pem")});
  EXPECT_NE(client_.Output().find("TLS"), std::string::npos);
  HttpReply r = Request(http_port_, "GET", "/hello", "app");
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.body, "hello from the origin, host app");
}

// Bulk bytes both ways over the TLS control connection: frames read around the decoder,
// payloads forwarded without copies, records written while others are read.
TEST_F(FerroTls, BulkTcpEchoOverTls) {
  Origin origin(true);
  StartServer({"--tls-cert", P("server.pem"), "--tls-key", P("server.key")});
  StartClient(origin.port(), {"--tls", "--tls-ca", P("ca.pem")});
  ExpectTcpEcho(tcp_port_, 24u * 1024 * 1024 + 7, 21);
  ExpectTcpEcho(tcp_port_, 3, 22);  // and a tiny one afterwards
}

TEST_F(FerroTls, UnknownCaIsRefusedUnlessSkipVerify) {
  Origin origin(false);
  StartServer({"--tls-cert", P("server.pem"), "--tls-key", P("server.key")});
  // System roots do not know our CA.
  client_ = ChildProcess(ClientArgs(origin.port(), {"--tls"}));
  ASSERT_TRUE(client_.WaitForOutput("certificate verify failed", 10s)) << client_.Output();
  EXPECT_EQ(client_.Output().find("connected to"), std::string::npos);
  client_.Stop(SIGTERM);
  client_ = ChildProcess(ClientArgs(origin.port(), {"--tls", "--tls-skip-verify"}));
  ASSERT_TRUE(client_.WaitForOutput("connected to", 10s)) << client_.Output();
  EXPECT_NE(client_.Output().find("verification is DISABLED"), std::string::npos);
}

TEST_F(FerroTls, MutualTls) {
  Origin origin(false);
  StartServer(
      {"--tls-cert", P("server.pem"), "--tls-key", P("server.key"), "--tls-ca", P("ca.pem")});
  // Without a client certificate the server refuses the TLS handshake.
  client_ = ChildProcess(ClientArgs(origin.port(), {"--tls", "--tls-ca", P("ca.pem")}));
  ASSERT_TRUE(server_.WaitForOutput("TLS handshake with", 10s)) << server_.Output();
  EXPECT_EQ(server_.Output().find("tunnel registered"), std::string::npos);
  client_.Stop(SIGTERM);
  StartClient(origin.port(), {"--tls", "--tls-ca", P("ca.pem"), "--tls-cert", P("client.pem"),
                              "--tls-key", P("client.key")});
  HttpReply r = Request(http_port_, "GET", "/hello", "app");
  EXPECT_EQ(r.status, 200) << r.error;
}

}  // namespace
