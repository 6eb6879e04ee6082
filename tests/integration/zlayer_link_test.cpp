// zlayer end to end with real processes on loopback: tunnelctl serve + tunnelctl link (+ access)
// over ws and wss, with echo origins run by the test.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <thread>

#include "process.hpp"

namespace {

using namespace std::chrono_literals;
using tunnelkit::test::ChildProcess;
using tunnelkit::test::FreeTcpPort;
using tunnelkit::test::Sha256Hex;

const std::string kTunnelctl = TUNNELCTL_PATH;

int Listen(int type, int& port) {
  int fd = ::socket(AF_INET, type, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  if (type == SOCK_STREAM) ::listen(fd, 64);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  port = ntohs(addr.sin_port);
  return fd;
}

// TCP echo origin (thread per connection) and UDP echo origin ("echo:" prefix), until destroyed.
class EchoOrigins {
 public:
  EchoOrigins() {
    tcp_fd_ = Listen(SOCK_STREAM, tcp_port_);
    udp_fd_ = Listen(SOCK_DGRAM, udp_port_);
    threads_.emplace_back([this] { AcceptLoop(); });
    threads_.emplace_back([this] { UdpLoop(); });
  }
  ~EchoOrigins() {
    stop_ = true;
    ::shutdown(tcp_fd_, SHUT_RDWR);
    ::close(tcp_fd_);
    ::shutdown(udp_fd_, SHUT_RDWR);
    ::close(udp_fd_);
    for (auto& t : threads_) t.join();
  }
  int tcp_port() const { return tcp_port_; }
  int udp_port() const { return udp_port_; }

 private:
  void AcceptLoop() {
    while (!stop_) {
      pollfd p{tcp_fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      const int fd = ::accept(tcp_fd_, nullptr, nullptr);
      if (fd < 0) continue;
      std::thread([fd] {
        char buf[65536];
        for (;;) {
          const ssize_t n = ::read(fd, buf, sizeof buf);
          if (n <= 0) break;
          ssize_t off = 0;
          while (off < n) {
            const ssize_t w = ::write(fd, buf + off, static_cast<size_t>(n - off));
            if (w <= 0) break;
            off += w;
          }
        }
        ::shutdown(fd, SHUT_WR);
        ::close(fd);
      }).detach();
    }
  }
  void UdpLoop() {
    char buf[65536];
    while (!stop_) {
      pollfd p{udp_fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      sockaddr_in from{};
      socklen_t len = sizeof from;
      const ssize_t n =
          ::recvfrom(udp_fd_, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
      if (n < 0) continue;
      std::string reply = "echo:" + std::string(buf, static_cast<size_t>(n));
      ::sendto(udp_fd_, reply.data(), reply.size(), 0, reinterpret_cast<sockaddr*>(&from), len);
    }
  }
  int tcp_fd_ = -1;
  int udp_fd_ = -1;
  int tcp_port_ = 0;
  int udp_port_ = 0;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

int ConnectTcp(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  timeval tv{30, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

// Sends `body` (then half-closes) while reading everything back until EOF.
std::string EchoThrough(int port, const std::string& body) {
  const int fd = ConnectTcp(port);
  if (fd < 0) return "connect failed";
  std::thread writer([fd, &body] {
    size_t off = 0;
    while (off < body.size()) {
      const ssize_t w =
          ::write(fd, body.data() + off, std::min<size_t>(1 << 16, body.size() - off));
      if (w <= 0) break;
      off += static_cast<size_t>(w);
    }
    ::shutdown(fd, SHUT_WR);
  });
  std::string back;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    back.append(buf, static_cast<size_t>(n));
  }
  writer.join();
  ::close(fd);
  return back;
}

std::string UdpRoundTrip(int port, const std::string& datagram) {
  int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::sendto(fd, datagram.data(), datagram.size(), 0, reinterpret_cast<sockaddr*>(&addr),
           sizeof addr);
  char buf[65536];
  const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
  ::close(fd);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

std::string RandomBody(size_t n) {
  std::string body(n, '\0');
  std::mt19937_64 rng(42);
  for (size_t i = 0; i + 8 <= n; i += 8) {
    const auto v = rng();
    std::memcpy(&body[i], &v, 8);
  }
  return body;
}

// Waits for "public port N" for service `name` in the link's output.
int WaitForPublicPort(ChildProcess& link, const std::string& name, int occurrence = 1) {
  const std::regex re("service " + name + " \\((tcp|udp)\\) -> public port ([0-9]+)");
  const auto end = std::chrono::steady_clock::now() + 20s;
  while (std::chrono::steady_clock::now() < end) {
    link.WaitForOutput("public port", 200ms);
    const std::string out = link.Output();
    int seen = 0;
    for (auto it = std::sregex_iterator(out.begin(), out.end(), re); it != std::sregex_iterator();
         ++it) {
      if (++seen == occurrence) return std::stoi((*it)[2]);
    }
    if (!link.Running()) return -1;
  }
  return -1;
}

class ZlayerEndToEnd : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/zlayer-e2e-XXXXXX";
    dir_ = mkdtemp(pattern);
    tokens_ = (dir_ / "tokens").string();
    std::ofstream(tokens_) << "# test tokens\n"
                           << Sha256Hex("tun_alpha") << "\n"
                           << Sha256Hex("tun_beta") << "\n"
                           << Sha256Hex("tun_expired") << " 1000\n";
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  bool MakeCert() {
    cert_ = (dir_ / "cert.pem").string();
    key_ = (dir_ / "key.pem").string();
    const auto r = tunnelkit::test::RunProcess(
        {"/usr/bin/openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext",
         "subjectAltName=DNS:localhost,DNS:127.0.0.1,IP:127.0.0.1", "-keyout", key_, "-out",
         cert_});
    return r.exit_status == 0;
  }

  ChildProcess StartServer(int ws_port, int low, int high, bool tls = false) {
    std::vector<std::string> argv = {kTunnelctl,  "serve",
                                     "--backend", "zlayer",
                                     "--listen",  "127.0.0.1:" + std::to_string(ws_port),
                                     "--ports",   std::to_string(low) + "-" + std::to_string(high),
                                     "--tokens",  tokens_};
    if (tls) {
      argv.insert(argv.end(), {"--tls-cert", cert_, "--tls-key", key_});
    }
    ChildProcess server(argv);
    EXPECT_TRUE(server.WaitForOutput("zlayer server listening", 15s)) << server.Output();
    return server;
  }

  ChildProcess StartLink(const std::string& url, const std::string& token,
                         const std::vector<std::string>& services, bool tls = false) {
    std::vector<std::string> argv = {kTunnelctl, "link", "--backend", "zlayer",
                                     "--server", url,    "--token",   token};
    for (const auto& s : services) argv.insert(argv.end(), {"--service", s});
    if (tls) argv.insert(argv.end(), {"--tls-ca", cert_});
    return ChildProcess(argv);
  }

  std::filesystem::path dir_;
  std::string tokens_;
  std::string cert_;
  std::string key_;
};

void CheckTcpAndUdp(ChildProcess& link, const EchoOrigins& echo) {
  const int tcp_port = WaitForPublicPort(link, "echo");
  ASSERT_GT(tcp_port, 0) << link.Output();
  const int udp_port = WaitForPublicPort(link, "dns");
  ASSERT_GT(udp_port, 0) << link.Output();
  const std::string body = RandomBody(50u << 20);
  const std::string back = EchoThrough(tcp_port, body);
  EXPECT_EQ(back.size(), body.size());
  EXPECT_EQ(Sha256Hex(back), Sha256Hex(body));
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(UdpRoundTrip(udp_port, "query " + std::to_string(i)),
              "echo:query " + std::to_string(i));
  }
  (void)echo;
}

TEST_F(ZlayerEndToEnd, TcpFiftyMegabytesAndUdpOverWs) {
  EchoOrigins echo;
  const int ws_port = FreeTcpPort();
  const int low = FreeTcpPort();
  auto server = StartServer(ws_port, low, low + 3);
  auto link = StartLink("ws://127.0.0.1:" + std::to_string(ws_port) + "/tunnel/v1", "tun_alpha",
                        {"echo:" + std::to_string(echo.tcp_port()),
                         "dns:" + std::to_string(echo.udp_port()) + "/udp"});
  CheckTcpAndUdp(link, echo);
  EXPECT_EQ(link.Output().find("tun_alpha"), std::string::npos) << "the token was logged";
  EXPECT_EQ(server.Output().find("tun_alpha"), std::string::npos) << "the token was logged";
  EXPECT_EQ(link.Stop(SIGTERM), 0);
  EXPECT_EQ(server.Stop(SIGTERM), 0);
}

TEST_F(ZlayerEndToEnd, TcpFiftyMegabytesAndUdpOverWss) {
  ASSERT_TRUE(MakeCert());
  EchoOrigins echo;
  const int ws_port = FreeTcpPort();
  const int low = FreeTcpPort();
  auto server = StartServer(ws_port, low, low + 3, true);
  auto link = StartLink("wss://127.0.0.1:" + std::to_string(ws_port) + "/tunnel/v1", "tun_alpha",
                        {"echo:" + std::to_string(echo.tcp_port()),
                         "dns:" + std::to_string(echo.udp_port()) + "/udp"},
                        true);
  CheckTcpAndUdp(link, echo);
  link.Stop(SIGTERM);
  server.Stop(SIGTERM);
}

TEST_F(ZlayerEndToEnd, BadDataChannelsIsRefusedBeforeStarting) {
  const auto r = tunnelkit::test::RunProcess(
      {kTunnelctl, "link", "--backend", "zlayer", "--server", "ws://127.0.0.1:9/tunnel/v1",
       "--token", "t", "--service", "web:8080:0", "--data-channels", "bogus"},
      10s);
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_NE((r.out + r.err).find("data_channels"), std::string::npos) << r.out << r.err;
  EXPECT_NE((r.out + r.err).find("bogus"), std::string::npos) << r.out << r.err;
}

TEST_F(ZlayerEndToEnd, TwoLinksWrongTokenTokenInUseAndPortsExhausted) {
  EchoOrigins echo;
  const int ws_port = FreeTcpPort();
  const int low = FreeTcpPort();
  // Three public ports in all: a port of the range that another process holds meanwhile is
  // skipped, so b still gets one and at least one of its extras is refused.
  auto server = StartServer(ws_port, low, low + 2);
  const std::string url = "ws://127.0.0.1:" + std::to_string(ws_port) + "/tunnel/v1";
  const std::string svc = std::to_string(echo.tcp_port());
  // One after the other, so that `a` surely gets a port before `b` asks for two.
  auto a = StartLink(url, "tun_alpha", {"echo:" + svc});
  const int port_a = WaitForPublicPort(a, "echo");
  ASSERT_GT(port_a, 0) << a.Output();
  auto b = StartLink(url, "tun_beta", {"echo:" + svc, "extra:" + svc, "extra2:" + svc});
  const int port_b = WaitForPublicPort(b, "echo");
  ASSERT_GT(port_b, 0) << b.Output();
  EXPECT_NE(port_a, port_b);
  EXPECT_TRUE(b.WaitForOutput("refused: Registry error: no ports available", 10s)) << b.Output();
  EXPECT_EQ(EchoThrough(port_a, "hello a"), "hello a");
  EXPECT_EQ(EchoThrough(port_b, "hello b"), "hello b");

  auto wrong = StartLink(url, "tun_nope", {"echo:" + svc});
  const auto wrong_status = wrong.Wait(20s);
  ASSERT_TRUE(wrong_status.has_value()) << wrong.Output();
  EXPECT_NE(*wrong_status, 0);
  EXPECT_NE(wrong.Output().find("Authentication error: invalid tunnel token"), std::string::npos)
      << wrong.Output();

  auto expired = StartLink(url, "tun_expired", {"echo:" + svc});
  ASSERT_TRUE(expired.Wait(20s).has_value());
  EXPECT_NE(expired.Output().find("tunnel token expired"), std::string::npos) << expired.Output();

  auto twice = StartLink(url, "tun_alpha", {"echo:" + svc});
  EXPECT_TRUE(twice.WaitForOutput("Token already in use", 10s)) << twice.Output();
  twice.Stop(SIGTERM);
  a.Stop(SIGTERM);
  b.Stop(SIGTERM);
  server.Stop(SIGTERM);
}

TEST_F(ZlayerEndToEnd, ServerRestartAgentReconnectsAndReRegisters) {
  EchoOrigins echo;
  const int ws_port = FreeTcpPort();
  const int low = FreeTcpPort();
  auto server = StartServer(ws_port, low, low + 1);
  auto link = StartLink("ws://127.0.0.1:" + std::to_string(ws_port) + "/tunnel/v1", "tun_alpha",
                        {"echo:" + std::to_string(echo.tcp_port())});
  const int first = WaitForPublicPort(link, "echo");
  ASSERT_GT(first, 0) << link.Output();
  EXPECT_EQ(server.Stop(SIGTERM), 0);
  EXPECT_TRUE(link.WaitForOutput("server disconnected: server shutting down", 10s))
      << link.Output();
  auto restarted = StartServer(ws_port, low, low + 1);
  // Backoff starts at 5 s (with jitter), so the second registration comes within ~15 s.
  const int second = WaitForPublicPort(link, "echo", 2);
  ASSERT_GT(second, 0) << link.Output();
  EXPECT_EQ(EchoThrough(second, "after restart"), "after restart");
  link.Stop(SIGTERM);
  restarted.Stop(SIGTERM);
}

TEST_F(ZlayerEndToEnd, SeveralLinksFromAConfigFile) {
  EchoOrigins echo;
  const int ws_port = FreeTcpPort();
  const int low = FreeTcpPort();
  auto server = StartServer(ws_port, low, low + 3);
  const std::string url = "ws://127.0.0.1:" + std::to_string(ws_port) + "/tunnel/v1";
  const std::string config = (dir_ / "links.yaml").string();
  std::ofstream(config) << "backend: zlayer\n"
                        << "zlayer:\n"
                        << "  links:\n"
                        << "    - name: first\n"
                        << "      server: " << url << "\n"
                        << "      token: tun_alpha\n"
                        << "      service: [\"echo:" << echo.tcp_port() << "\"]\n"
                        << "    - name: second\n"
                        << "      server: " << url << "\n"
                        << "      token: tun_beta\n"
                        << "      service: [\"dns:" << echo.udp_port() << "/udp\"]\n";
  const int admin_port = FreeTcpPort();
  ChildProcess links({kTunnelctl, "link", "--config", config, "--metrics",
                      "127.0.0.1:" + std::to_string(admin_port)});
  const int tcp_port = WaitForPublicPort(links, "echo");
  const int udp_port = WaitForPublicPort(links, "dns");
  ASSERT_GT(tcp_port, 0) << links.Output();
  ASSERT_GT(udp_port, 0) << links.Output();
  EXPECT_NE(links.Output().find("first: service echo"), std::string::npos) << links.Output();
  EXPECT_NE(links.Output().find("second: service dns"), std::string::npos) << links.Output();
  EXPECT_EQ(EchoThrough(tcp_port, "via first"), "via first");
  EXPECT_EQ(UdpRoundTrip(udp_port, "via second"), "echo:via second");
  // Both links and their ports in the admin JSON; /ready once both are connected.
  const auto tunnels =
      tunnelkit::test::RunProcess({"/usr/bin/curl", "-s", "--max-time", "5",
                                   "http://127.0.0.1:" + std::to_string(admin_port) + "/tunnels"});
  EXPECT_NE(tunnels.out.find("\"name\":\"first\""), std::string::npos) << tunnels.out;
  EXPECT_NE(tunnels.out.find("\"public_port\":" + std::to_string(tcp_port)), std::string::npos)
      << tunnels.out;
  EXPECT_NE(tunnels.out.find("\"public_port\":" + std::to_string(udp_port)), std::string::npos)
      << tunnels.out;
  EXPECT_NE(tunnels.out.find("\"state\":\"connected\""), std::string::npos) << tunnels.out;
  const auto ready =
      tunnelkit::test::RunProcess({"/usr/bin/curl", "-s", "--max-time", "5",
                                   "http://127.0.0.1:" + std::to_string(admin_port) + "/ready"});
  EXPECT_NE(ready.out.find("\"readyConnections\":2"), std::string::npos) << ready.out;
  // Each link's state is also a metric.
  const auto metrics =
      tunnelkit::test::RunProcess({"/usr/bin/curl", "-s", "--max-time", "5",
                                   "http://127.0.0.1:" + std::to_string(admin_port) + "/metrics"});
  EXPECT_NE(metrics.out.find("tunnelkit_link_up{"), std::string::npos) << metrics.out;
  EXPECT_NE(metrics.out.find("link=\"first\"} 1"), std::string::npos) << metrics.out;
  EXPECT_NE(metrics.out.find("link=\"second\"} 1"), std::string::npos) << metrics.out;
  EXPECT_EQ(links.Stop(SIGTERM), 0);
  server.Stop(SIGTERM);
}

TEST_F(ZlayerEndToEnd, AccessForwardEndsOpenConnectionsAtTtl) {
  EchoOrigins echo;
  const int local = FreeTcpPort();
  ChildProcess access({kTunnelctl, "access", "--backend", "zlayer", "--endpoint",
                       "127.0.0.1:" + std::to_string(echo.tcp_port()), "--local",
                       "127.0.0.1:" + std::to_string(local), "--ttl", "3s"});
  ASSERT_TRUE(access.WaitForOutput("access: forwarding", 10s)) << access.Output();
  const int fd = ConnectTcp(local);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, "ping", 4), 4);
  char buf[16];
  ASSERT_EQ(::read(fd, buf, sizeof buf), 4);
  EXPECT_EQ(std::string(buf, 4), "ping");
  // The connection stays open; the TTL must end it.
  const auto start = std::chrono::steady_clock::now();
  const ssize_t n = ::read(fd, buf, sizeof buf);
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_LE(n, 0);
  EXPECT_GE(waited, 1500ms);
  EXPECT_LE(waited, 10s);
  ::close(fd);
  const auto status = access.Wait(10s);
  ASSERT_TRUE(status.has_value()) << access.Output();
  EXPECT_EQ(*status, 0);
  EXPECT_NE(access.Output().find("TTL expired"), std::string::npos) << access.Output();
  EXPECT_LT(ConnectTcp(local), 0);  // the listener is gone
}

}  // namespace
