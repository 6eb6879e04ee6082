// tunnelctl without --edge: edge discovery asks a DNS server run here on 127.0.0.1 (UDP) for the
// SRV and A records, which point at tools/cfedge's QUIC listener; the DoT fallback is pointed at
// a closed loopback port so nothing can leave the machine.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "process.hpp"

namespace {

using tunnelkit::test::ChildProcess;
using namespace std::chrono_literals;

std::string CfedgePath() {
  return (std::filesystem::path(TUNNELCTL_PATH).parent_path() / "cfedge").string();
}

std::string Field(const std::string& output, const std::string& label) {
  std::smatch match;
  if (std::regex_search(output, match, std::regex("(^|\n)" + label + " ([^\n]+)"))) return match[2];
  return {};
}

std::vector<std::uint8_t> Name(const std::string& dotted) {
  std::vector<std::uint8_t> out;
  std::size_t start = 0;
  while (start < dotted.size()) {
    std::size_t dot = dotted.find('.', start);
    if (dot == std::string::npos) dot = dotted.size();
    out.push_back(static_cast<std::uint8_t>(dot - start));
    out.insert(out.end(), dotted.begin() + static_cast<long>(start),
               dotted.begin() + static_cast<long>(dot));
    start = dot + 1;
  }
  out.push_back(0);
  return out;
}

// Answers every SRV query with region1/region2 at `edge_port` and every A query with 127.0.0.1.
class LoopbackDns {
 public:
  explicit LoopbackDns(std::uint16_t edge_port) : edge_port_(edge_port) {
    fd_ = ::socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~LoopbackDns() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  std::uint16_t port() const { return port_; }
  int queries() const { return queries_; }

 private:
  void Serve() {
    std::uint8_t q[4096];
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      sockaddr_in from{};
      socklen_t len = sizeof from;
      ssize_t n = ::recvfrom(fd_, q, sizeof q, 0, reinterpret_cast<sockaddr*>(&from), &len);
      if (n < 17) continue;
      std::size_t i = 12;
      while (i < static_cast<std::size_t>(n) && q[i] != 0) i += 1u + q[i];
      if (i + 5 > static_cast<std::size_t>(n)) continue;
      ++queries_;
      std::uint16_t type = static_cast<std::uint16_t>((q[i + 1] << 8) | q[i + 2]);
      std::vector<std::vector<std::uint8_t>> rdatas;
      if (type == 33) {
        for (std::uint8_t priority : {1, 2}) {
          std::vector<std::uint8_t> r = {0,
                                         priority,
                                         0,
                                         0,
                                         static_cast<std::uint8_t>(edge_port_ >> 8),
                                         static_cast<std::uint8_t>(edge_port_)};
          auto target = Name("region" + std::to_string(priority) + ".v2.argotunnel.com");
          r.insert(r.end(), target.begin(), target.end());
          rdatas.push_back(r);
        }
      } else if (type == 1) {
        rdatas.push_back({127, 0, 0, 1});
      }
      std::vector<std::uint8_t> out(q, q + i + 5);
      out[2] = 0x81;
      out[3] = 0x80;
      out[7] = static_cast<std::uint8_t>(rdatas.size());
      out[9] = out[11] = 0;
      for (const auto& r : rdatas) {
        std::vector<std::uint8_t> rr = {0xc0, 12, 0, static_cast<std::uint8_t>(type),    0, 1, 0, 0,
                                        0,    60, 0, static_cast<std::uint8_t>(r.size())};
        out.insert(out.end(), rr.begin(), rr.end());
        out.insert(out.end(), r.begin(), r.end());
      }
      ::sendto(fd_, out.data(), out.size(), 0, reinterpret_cast<sockaddr*>(&from), len);
    }
  }

  std::uint16_t edge_port_;
  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> queries_{0};
  std::thread thread_;
};

TEST(CloudflareEdgeDiscovery, RegistersThroughDiscoveredEdge) {
  ASSERT_TRUE(std::filesystem::exists(CfedgePath())) << CfedgePath();
  std::string ca = (std::filesystem::temp_directory_path() /
                    ("cfdisc-" + std::to_string(::getpid()) + "-ca.pem"))
                       .string();
  ChildProcess edge({CfedgePath(), "--api-listen", "127.0.0.1:0", "--quic-listen", "127.0.0.1:0",
                     "--write-ca", ca});
  ASSERT_TRUE(edge.WaitForOutput("ready", 20s)) << edge.Output();
  std::string quic = Field(edge.Output(), "edge quic");
  std::string api = Field(edge.Output(), "api");
  auto port = static_cast<std::uint16_t>(std::stoi(quic.substr(quic.rfind(':') + 1)));
  LoopbackDns dns(port);
  ChildProcess client({TUNNELCTL_PATH, "--backend", "cloudflare", "--url", "http://localhost:8080",
                       "--quick-service", api, "--edge-ca", ca, "--dns-resolver",
                       "127.0.0.1:" + std::to_string(dns.port()), "--dns-over-tls", "127.0.0.1:1",
                       "--grace-period", "1s"});
  ASSERT_TRUE(client.WaitForOutput("connection 0 registered: location=lhr01", 20s))
      << client.Output() << "\n--- edge:\n"
      << edge.Output();
  EXPECT_NE(client.Output().find("edge discovery: 1 addresses in region1, 1 in region2"),
            std::string::npos)
      << client.Output();
  EXPECT_NE(client.Output().find("edge=" + quic), std::string::npos) << client.Output();
  EXPECT_EQ(dns.queries(), 3);
  std::filesystem::remove(ca);
}

}  // namespace
