// What anonymous clients may hold of a ferro server (issue 14, defects 2, 3, 4, 6): the
// handshake frame cap and the cap on unauthenticated connections, the public connection caps
// (503 for HTTP), the per-source budget for wrong tokens, and accepting again after running out
// of descriptors. Real server, real sockets on loopback (127.0.0.x as distinct client hosts).
#include <gtest/gtest.h>

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <boost/asio.hpp>
#include <filesystem>
#include <future>
#include <sstream>
#include <thread>

#include "codec/codec.hpp"
#include "fd_exhaustion.hpp"
#include "server/server.hpp"

namespace tunnelkit::ferro {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

class FerroServerLimits : public ::testing::Test {
 protected:
  void SetUp() override {
    logger_ = std::make_shared<spdlog::logger>(
        "ferro-limits", std::make_shared<spdlog::sinks::ostream_sink_mt>(log_));
    logger_->flush_on(spdlog::level::trace);
    guard_.emplace(io_.get_executor());
    thread_ = std::thread([this] { io_.run(); });
  }

  void TearDown() override {
    for (int fd : fds_) ::close(fd);
    OnLoop([this] {
      if (server_) server_->Stop();
    });
    guard_.reset();
    io_.stop();
    thread_.join();
    if (HasFailure()) std::cerr << "---- log\n" << Log();
  }

  template <typename F>
  auto OnLoop(F f) -> decltype(f()) {
    std::packaged_task<decltype(f())()> task(std::move(f));
    auto future = task.get_future();
    asio::post(io_, [&task] { task(); });
    return future.get();
  }

  static ServerSettings Settings() {
    ServerSettings s;
    s.listen = "127.0.0.1:0";
    s.http = "127.0.0.1:0";
    s.tcp = "127.0.0.1:0";
    s.token = "secret";
    s.handshake_timeout = 5s;
    return s;
  }

  void Start(ServerSettings settings) {
    OnLoop([&] {
      server_ = std::make_shared<FerroServer>(io_, std::move(settings), logger_);
      server_->Start();
    });
    control_port_ = server_->control_endpoint().port();
    http_port_ = server_->http_endpoint().port();
    tcp_port_ = server_->tcp_endpoint().port();
  }

  int Connect(int port, const char* source = nullptr) {
    const int fd = test::ConnectLoopback(port, source);
    EXPECT_GE(fd, 0);
    if (fd >= 0) fds_.push_back(fd);
    return fd;
  }
  void Close(int fd) {
    ::close(fd);
    std::erase(fds_, fd);
  }

  std::string Log() {
    logger_->flush();
    return log_.str();
  }

  // Sends a Handshake with `token` and returns the status of the HandshakeAck that comes
  // back; nullopt when the server closes without one.
  std::optional<HandshakeStatus> Handshake(int fd, const std::string& token) {
    Bytes bytes;
    std::string error;
    const Frame hello = ferro::Handshake{token, std::string("app"), 1, 1, {"basic"}};
    EXPECT_TRUE(EncodeFrame(hello, bytes, error)) << error;
    test::SendAll(fd, bytes.data(), bytes.size());
    FrameDecoder decoder;
    const auto deadline = std::chrono::steady_clock::now() + 3s;
    while (std::chrono::steady_clock::now() < deadline) {
      const std::string got = test::ReadFor(fd, 500ms);
      if (got.empty()) {
        std::string rest;
        if (test::ClosedWithin(fd, 10ms, &rest) && rest.empty()) return std::nullopt;
        continue;
      }
      decoder.Feed(reinterpret_cast<const std::uint8_t*>(got.data()), got.size());
      Frame frame;
      if (decoder.Next(frame) == DecodeStatus::kFrame) {
        if (auto* ack = std::get_if<HandshakeAck>(&frame)) return ack->status;
        return std::nullopt;
      }
    }
    return std::nullopt;
  }

  std::size_t Unauthenticated() {
    return OnLoop([this] { return server_->unauthenticated_connections(); });
  }
  std::size_t Public() {
    return OnLoop([this] { return server_->public_connections(); });
  }
  bool WaitFor(const std::function<bool()>& done, std::chrono::milliseconds timeout = 3s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(10ms);
    }
    return true;
  }

  asio::io_context io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> guard_;
  std::thread thread_;
  std::ostringstream log_;
  std::shared_ptr<spdlog::logger> logger_;
  std::shared_ptr<FerroServer> server_;
  std::vector<int> fds_;
  int control_port_ = 0;
  int http_port_ = 0;
  int tcp_port_ = 0;
};

// Defect 3: a frame header announcing 15 MiB before any token check is refused at once (the
// server once waited for, and buffered, all of it).
TEST_F(FerroServerLimits, HandshakeFrameIsCappedBeforeAuthentication) {
  Start(Settings());
  const int fd = Connect(control_port_);
  const std::uint8_t header[5] = {0x00, 0xF0, 0x00, 0x00, 0x00};  // 15 MiB control frame
  ASSERT_TRUE(test::SendAll(fd, header, sizeof header));
  const std::vector<std::uint8_t> filler(4096, 0);
  test::SendAll(fd, filler.data(), filler.size());
  EXPECT_TRUE(test::ClosedWithin(fd, 1500ms)) << "a 15 MiB pre-auth frame was not refused";
  EXPECT_TRUE(WaitFor([this] { return Log().find("handshake failed") != std::string::npos; }));
  // A real Handshake is far below the cap.
  const int good = Connect(control_port_);
  EXPECT_EQ(Handshake(good, "secret"), HandshakeStatus::kSuccess);
}

// Defect 3: connections that have not sent their Handshake are capped server-wide and per
// source; the ones over the cap are closed at accept.
TEST_F(FerroServerLimits, UnauthenticatedConnectionsAreCapped) {
  ServerSettings settings = Settings();
  settings.limits.unauthenticated = {4, 2};
  Start(settings);
  const int a1 = Connect(control_port_, "127.0.0.1");
  Connect(control_port_, "127.0.0.1");
  ASSERT_TRUE(WaitFor([this] { return Unauthenticated() == 2; }));
  const int a3 = Connect(control_port_, "127.0.0.1");
  EXPECT_TRUE(test::ClosedWithin(a3, 1s)) << "per-source cap not applied";
  Connect(control_port_, "127.0.0.2");
  Connect(control_port_, "127.0.0.2");
  ASSERT_TRUE(WaitFor([this] { return Unauthenticated() == 4; }));
  const int c1 = Connect(control_port_, "127.0.0.3");
  EXPECT_TRUE(test::ClosedWithin(c1, 1s)) << "overall cap not applied";
  EXPECT_EQ(Unauthenticated(), 4u);
  // A slot that frees up is usable again, and a completed handshake frees its slot.
  Close(a1);
  ASSERT_TRUE(WaitFor([this] { return Unauthenticated() == 3; }));
  const int c2 = Connect(control_port_, "127.0.0.3");
  EXPECT_EQ(Handshake(c2, "secret"), HandshakeStatus::kSuccess);
  EXPECT_TRUE(WaitFor([this] { return Unauthenticated() == 3; }));
  EXPECT_NE(Log().find("waiting for their handshake"), std::string::npos);
}

// Defect 4: public connections are capped overall and per source; HTTP over a cap gets a 503,
// TCP a close; a freed slot serves again.
TEST_F(FerroServerLimits, PublicConnectionsAreCappedWith503) {
  ServerSettings settings = Settings();
  settings.limits.public_connections = {3, 2};
  Start(settings);
  const int a1 = Connect(http_port_, "127.0.0.1");
  Connect(http_port_, "127.0.0.1");
  ASSERT_TRUE(WaitFor([this] { return Public() == 2; }));
  const int a3 = Connect(http_port_, "127.0.0.1");
  std::string reply;
  EXPECT_TRUE(test::ClosedWithin(a3, 2s, &reply));
  EXPECT_EQ(reply.rfind("HTTP/1.1 503 ", 0), 0u) << reply;
  Connect(http_port_, "127.0.0.2");
  ASSERT_TRUE(WaitFor([this] { return Public() == 3; }));
  const int c1 = Connect(http_port_, "127.0.0.3");
  reply.clear();
  EXPECT_TRUE(test::ClosedWithin(c1, 2s, &reply));
  EXPECT_EQ(reply.rfind("HTTP/1.1 503 ", 0), 0u) << reply;
  // TCP ingress shares the caps (closed without a byte).
  const int t1 = Connect(tcp_port_, "127.0.0.4");
  reply.clear();
  EXPECT_TRUE(test::ClosedWithin(t1, 2s, &reply));
  EXPECT_TRUE(reply.empty()) << reply;
  EXPECT_EQ(OnLoop([this] { return server_->public_refusals(); }), 3u);
  Close(a1);
  ASSERT_TRUE(WaitFor([this] { return Public() == 2; }));
  const int c2 = Connect(http_port_, "127.0.0.3");
  const std::string health = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
  test::SendAll(c2, health.data(), health.size());
  reply.clear();
  test::ClosedWithin(c2, 3s, &reply);
  EXPECT_EQ(reply.rfind("HTTP/1.1 200 ", 0), 0u) << reply;
}

// Defect 6: each source may send a few wrong tokens, then its control connections are closed
// at accept until its bucket refills; other sources are not affected; failures are logged in
// aggregate.
TEST_F(FerroServerLimits, WrongTokensAreRateLimitedPerSource) {
  ServerSettings settings = Settings();
  settings.limits.auth_failures = {0.1, 3, 64};
  Start(settings);
  for (int i = 0; i < 3; ++i) {
    const int fd = Connect(control_port_, "127.0.0.1");
    EXPECT_EQ(Handshake(fd, "wrong"), HandshakeStatus::kInvalidToken) << i;
  }
  const int over = Connect(control_port_, "127.0.0.1");
  std::string received;
  EXPECT_TRUE(test::ClosedWithin(over, 1s, &received));
  EXPECT_TRUE(received.empty()) << "a source out of failures was still answered";
  const int other = Connect(control_port_, "127.0.0.2");
  EXPECT_EQ(Handshake(other, "wrong"), HandshakeStatus::kInvalidToken);
  EXPECT_EQ(OnLoop([this] { return server_->auth_refusals(); }), 1u);
  // Four failures in well under the 5 s interval: one line, not four.
  const std::string log = Log();
  EXPECT_EQ(test::CountLines(log, "rejected: invalid token"), 1u) << log;
  EXPECT_EQ(test::CountLines(log, "too many authentication failures"), 1u) << log;
  EXPECT_EQ(log.find("wrong"), std::string::npos) << "the token was logged";
}

TEST_F(FerroServerLimits, LimitsAreCheckedBeforeStarting) {
  ServerSettings settings = Settings();
  settings.limits.public_connections = {10, 20};
  OnLoop([&] {
    auto server = std::make_shared<FerroServer>(io_, settings, logger_);
    try {
      server->Start();
      ADD_FAILURE() << "started with a per-source cap above the overall one";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("ferro.max_public_connections_per_source"),
                std::string::npos)
          << e.what();
    }
  });
}

// Defect 2: out of descriptors (RLIMIT_NOFILE 64 in a forked server, 150 idle clients), the
// HTTP ingress neither spins nor floods the log, and serves again once the clients go.
TEST(FerroServerDescriptors, IngressAcceptsAgainAfterRunningOut) {
  const std::string log_path = (std::filesystem::temp_directory_path() /
                                ("ferro-emfile-" + std::to_string(::getpid()) + ".log"))
                                   .string();
  std::filesystem::remove(log_path);
  test::ForkedServer child(64, [&](const auto& report) {
    ::signal(SIGPIPE, SIG_IGN);
    auto logger = std::make_shared<spdlog::logger>(
        "ferro", std::make_shared<spdlog::sinks::basic_file_sink_mt>(log_path));
    logger->flush_on(spdlog::level::trace);
    asio::io_context io;
    ServerSettings settings;
    settings.listen = "127.0.0.1:0";
    settings.http = "127.0.0.1:0";
    settings.token = "secret";
    auto server = std::make_shared<FerroServer>(io, settings, logger);
    server->Start();
    report({server->control_endpoint().port(), server->http_endpoint().port()});
    io.run();
  });
  ASSERT_EQ(child.ports().size(), 2u);
  const int http_port = child.ports()[1];
  std::vector<int> idle;
  for (int i = 0; i < 150; ++i) {
    const int fd = test::ConnectLoopback(http_port);
    ASSERT_GE(fd, 0);
    idle.push_back(fd);
  }
  std::this_thread::sleep_for(300ms);
  const double cpu_before = child.CpuSeconds();
  std::this_thread::sleep_for(2s);
  EXPECT_LT(child.CpuSeconds() - cpu_before, 0.4) << "the HTTP accept loop spins";
  ASSERT_TRUE(child.Alive());
  for (int fd : idle) ::close(fd);
  std::string reply;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (reply.rfind("HTTP/1.1 200 ", 0) != 0 && std::chrono::steady_clock::now() < deadline) {
    const int fd = test::ConnectLoopback(http_port);
    ASSERT_GE(fd, 0);
    const std::string health = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    test::SendAll(fd, health.data(), health.size());
    reply = test::ReadFor(fd, 1s);
    ::close(fd);
  }
  EXPECT_EQ(reply.rfind("HTTP/1.1 200 ", 0), 0u) << "no longer serving: " << reply;
  const std::string log = test::ReadFile(log_path);
  EXPECT_GE(test::CountLines(log, "accept failed"), 1u) << log;
  EXPECT_LE(test::CountLines(log, "accept failed"), 6u) << log;
  std::filesystem::remove(log_path);
}

}  // namespace
}  // namespace tunnelkit::ferro
