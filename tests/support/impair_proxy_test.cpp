// The impairment proxy itself, against echo servers run by the test on loopback: what goes in
// comes out (in order for TCP), and each impairment has the effect it claims.
#include "impair_proxy.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace {

using tunnelkit::test::Impairment;
using tunnelkit::test::ImpairProxy;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

sockaddr_in Loopback(int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  return addr;
}

int BoundSocket(int type, int& port) {
  const int fd = ::socket(AF_INET, type, 0);
  sockaddr_in addr = Loopback(0);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  port = ntohs(addr.sin_port);
  return fd;
}

// TCP echo (one thread per connection) or UDP echo, until destroyed.
class EchoServer {
 public:
  explicit EchoServer(int type) : type_(type) {
    fd_ = BoundSocket(type, port_);
    if (type == SOCK_STREAM) ::listen(fd_, 16);
    thread_ = std::thread([this] { type_ == SOCK_STREAM ? AcceptLoop() : UdpLoop(); });
  }
  ~EchoServer() {
    stop_ = true;
    thread_.join();
    for (auto& t : workers_) t.join();
    ::close(fd_);
  }
  int port() const { return port_; }

 private:
  void AcceptLoop() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      const int fd = ::accept(fd_, nullptr, nullptr);
      if (fd < 0) continue;
      workers_.emplace_back([this, fd] {
        char buf[65536];
        while (!stop_) {
          pollfd p{fd, POLLIN, 0};
          if (::poll(&p, 1, 50) <= 0) continue;
          const ssize_t n = ::read(fd, buf, sizeof buf);
          if (n <= 0) break;
          for (ssize_t off = 0; off < n;) {
            const ssize_t w = ::write(fd, buf + off, static_cast<size_t>(n - off));
            if (w <= 0) break;
            off += w;
          }
        }
        ::close(fd);
      });
    }
  }
  void UdpLoop() {
    char buf[65536];
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      sockaddr_in from{};
      socklen_t len = sizeof from;
      const ssize_t n =
          ::recvfrom(fd_, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
      if (n > 0)
        ::sendto(fd_, buf, static_cast<size_t>(n), 0, reinterpret_cast<sockaddr*>(&from), len);
    }
  }
  int type_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::vector<std::thread> workers_;
};

int Connect(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr = Loopback(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Reads until `size` bytes arrived or `timeout` passed.
std::string ReadFor(int fd, std::size_t size, std::chrono::milliseconds timeout) {
  std::string out;
  const auto deadline = Clock::now() + timeout;
  char buf[65536];
  while (out.size() < size) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    const ssize_t n = ::read(fd, buf, std::min(sizeof buf, size - out.size()));
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

std::string Bytes(std::size_t size) {
  std::string out(size, '\0');
  for (std::size_t i = 0; i < size; ++i) out[i] = static_cast<char>((i * 2654435761u) >> 13);
  return out;
}

// Writes everything from a thread while the caller reads the echo.
std::string EchoThrough(int fd, const std::string& payload, std::chrono::milliseconds timeout) {
  std::thread writer([&] {
    for (std::size_t off = 0; off < payload.size();) {
      const ssize_t w =
          ::write(fd, payload.data() + off, std::min<std::size_t>(65536, payload.size() - off));
      if (w <= 0) break;
      off += static_cast<std::size_t>(w);
    }
  });
  std::string back = ReadFor(fd, payload.size(), timeout);
  writer.join();
  return back;
}

TEST(ImpairProxy, TcpDelaysAndFragmentsButKeepsEveryByteInOrder) {
  EchoServer echo(SOCK_STREAM);
  ImpairProxy proxy(ImpairProxy::Protocol::kTcp, echo.port());
  proxy.Set({.delay = 30ms, .jitter = 20ms, .max_write = 1000});
  const int fd = Connect(proxy.port());
  ASSERT_GE(fd, 0);
  const std::string payload = Bytes(2 * 1024 * 1024 + 17);
  const auto start = Clock::now();
  const std::string back = EchoThrough(fd, payload, 20s);
  const auto elapsed = Clock::now() - start;
  ::close(fd);
  ASSERT_EQ(back.size(), payload.size());
  EXPECT_TRUE(back == payload);
  EXPECT_GE(elapsed, 60ms);  // at least the delay both ways
  // Each direction was forwarded in writes of at most 1000 bytes.
  EXPECT_GE(proxy.stats().writes, 2 * payload.size() / 1000);
  // The counter moves after each write completes: the last one may trail the echo a moment.
  for (int i = 0; i < 100 && proxy.stats().forwarded < 2 * payload.size(); ++i)
    std::this_thread::sleep_for(10ms);
  EXPECT_EQ(proxy.stats().forwarded, 2 * payload.size());
}

TEST(ImpairProxy, TcpThrottleLimitsTheRate) {
  EchoServer echo(SOCK_STREAM);
  ImpairProxy proxy(ImpairProxy::Protocol::kTcp, echo.port());
  proxy.Set({.bytes_per_second = 1024 * 1024});
  const int fd = Connect(proxy.port());
  ASSERT_GE(fd, 0);
  const std::string payload = Bytes(512 * 1024);
  const auto start = Clock::now();
  const std::string back = EchoThrough(fd, payload, 20s);
  const auto elapsed = Clock::now() - start;
  ::close(fd);
  EXPECT_TRUE(back == payload);
  EXPECT_GE(elapsed, 400ms);  // 512 KiB at 1 MiB/s is 0.5 s
}

TEST(ImpairProxy, TcpBlackholeHoldsBytesWithoutClosingUntilHealed) {
  EchoServer echo(SOCK_STREAM);
  ImpairProxy proxy(ImpairProxy::Protocol::kTcp, echo.port());
  const int fd = Connect(proxy.port());
  ASSERT_GE(fd, 0);
  EXPECT_EQ(EchoThrough(fd, "before", 5s), "before");
  proxy.Blackhole();
  ASSERT_EQ(::write(fd, "during", 6), 6);
  // Nothing comes back, and the connection is not closed either (poll would report it).
  pollfd p{fd, POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 500), 0);
  // A connection made while blackholed is held, not refused.
  const int late = Connect(proxy.port());
  ASSERT_GE(late, 0);
  ASSERT_EQ(::write(late, "late", 4), 4);
  proxy.Heal();
  EXPECT_EQ(ReadFor(fd, 6, 5s), "during");
  EXPECT_EQ(ReadFor(late, 4, 5s), "late");
  ::close(fd);
  ::close(late);
}

TEST(ImpairProxy, TcpCutResetsBothSides) {
  EchoServer echo(SOCK_STREAM);
  ImpairProxy proxy(ImpairProxy::Protocol::kTcp, echo.port());
  const int fd = Connect(proxy.port());
  ASSERT_GE(fd, 0);
  EXPECT_EQ(EchoThrough(fd, "x", 5s), "x");
  proxy.CutConnections();
  pollfd p{fd, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 5000), 1);
  char c;
  EXPECT_LE(::read(fd, &c, 1), 0);
  ::close(fd);
}

// Sends `count` numbered datagrams through the proxy to a UDP echo and collects the replies
// (read while sending, so the test's own socket buffer never overflows) until `wait` after the
// last send.
std::vector<int> UdpRound(int port, int count, std::chrono::milliseconds wait) {
  const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in addr = Loopback(port);
  ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  std::vector<int> got;
  std::atomic<bool> sent{false};
  std::thread reader([&] {
    auto deadline = Clock::time_point::max();
    while (Clock::now() < deadline) {
      if (sent && deadline == Clock::time_point::max()) deadline = Clock::now() + wait;
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 10) <= 0) continue;
      int value = -1;
      if (::recv(fd, &value, sizeof value, 0) == sizeof value) got.push_back(value);
    }
  });
  for (int i = 0; i < count; ++i) {
    ::send(fd, &i, sizeof i, 0);
    if (i % 10 == 9) std::this_thread::sleep_for(1ms);  // stay under the socket buffers
  }
  sent = true;
  reader.join();
  ::close(fd);
  return got;
}

TEST(ImpairProxy, UdpLossDropsAboutThatShareEachWay) {
  EchoServer echo(SOCK_DGRAM);
  ImpairProxy proxy(ImpairProxy::Protocol::kUdp, echo.port());
  proxy.Set({.loss = 0.2});
  const auto got = UdpRound(proxy.port(), 2000, 1s);
  // Both directions lose 20 %: 64 % come back (binomial, n = 2000: ±5 % is > 10 sigma).
  EXPECT_GT(got.size(), 2000u * 59 / 100);
  EXPECT_LT(got.size(), 2000u * 69 / 100);
  EXPECT_GT(proxy.stats().dropped, 0u);
}

TEST(ImpairProxy, UdpDuplicatesAndReordersWithJitter) {
  EchoServer echo(SOCK_DGRAM);
  ImpairProxy proxy(ImpairProxy::Protocol::kUdp, echo.port());
  proxy.Set({.delay = 20ms, .jitter = 20ms, .duplicate = 0.5});
  const auto got = UdpRound(proxy.port(), 500, 1500ms);
  // Each way half are doubled: 500 * 1.5 * 1.5 = 1125 expected.
  EXPECT_GT(got.size(), 1000u);
  EXPECT_LT(got.size(), 1250u);
  std::set<int> distinct(got.begin(), got.end());
  EXPECT_EQ(distinct.size(), 500u);
  int out_of_order = 0;
  for (std::size_t i = 1; i < got.size(); ++i) out_of_order += got[i] < got[i - 1] ? 1 : 0;
  EXPECT_GT(out_of_order, 10);
}

TEST(ImpairProxy, UdpDelayIsAddedEachWay) {
  EchoServer echo(SOCK_DGRAM);
  ImpairProxy proxy(ImpairProxy::Protocol::kUdp, echo.port());
  proxy.Set({.delay = 100ms});
  const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in addr = Loopback(proxy.port());
  ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  const auto start = Clock::now();
  ::send(fd, "ping", 4, 0);
  pollfd p{fd, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 2000), 1);
  EXPECT_GE(Clock::now() - start, 200ms);
  ::close(fd);
}

TEST(ImpairProxy, UdpOneWayBlackholeDropsOnlyThatDirection) {
  EchoServer echo(SOCK_DGRAM);
  ImpairProxy proxy(ImpairProxy::Protocol::kUdp, echo.port());
  proxy.Blackhole(ImpairProxy::Direction::kToClient);
  EXPECT_TRUE(UdpRound(proxy.port(), 100, 300ms).empty());
  // The requests went through: only the replies were dropped.
  EXPECT_EQ(proxy.stats().forwarded, 100u);
  EXPECT_EQ(proxy.stats().dropped, 100u);
}

TEST(ImpairProxy, TcpOneWayBlackholeStallsOnlyThatDirection) {
  EchoServer echo(SOCK_STREAM);
  ImpairProxy proxy(ImpairProxy::Protocol::kTcp, echo.port());
  const int fd = Connect(proxy.port());
  ASSERT_GE(fd, 0);
  EXPECT_EQ(EchoThrough(fd, "a", 5s), "a");
  proxy.Blackhole(ImpairProxy::Direction::kToClient);
  ASSERT_EQ(::write(fd, "bc", 2), 2);
  EXPECT_EQ(ReadFor(fd, 2, 300ms), "");
  // The request reached the echo server: 1 + 2 bytes up, only the first byte down.
  for (int i = 0; i < 100 && proxy.stats().forwarded < 4; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(proxy.stats().forwarded, 4u);
  proxy.Heal();
  EXPECT_EQ(ReadFor(fd, 2, 5s), "bc");
  ::close(fd);
}

TEST(ImpairProxy, UdpBlackholeDropsEverythingUntilHealed) {
  EchoServer echo(SOCK_DGRAM);
  ImpairProxy proxy(ImpairProxy::Protocol::kUdp, echo.port());
  proxy.Blackhole();
  EXPECT_TRUE(UdpRound(proxy.port(), 100, 300ms).empty());
  proxy.Heal();
  EXPECT_EQ(UdpRound(proxy.port(), 100, 300ms).size(), 100u);
}

}  // namespace
