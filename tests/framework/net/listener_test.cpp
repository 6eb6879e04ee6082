// The core listener: open/bind errors name the address, accepted sockets reach the handler, and
// the accept loop survives running out of file descriptors (issue 14, defect 2) without
// spinning or flooding the log.
#include "tunnelkit/net/listener.hpp"

#include <gtest/gtest.h>

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <filesystem>

#include "fd_exhaustion.hpp"

namespace tunnelkit::net {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;

TEST(Listener, OpenNamesTheAddressWhenItIsTaken) {
  asio::io_context io;
  Listener first(io.get_executor());
  std::string error;
  ASSERT_TRUE(first.Open({asio::ip::make_address("127.0.0.1"), 0}, error)) << error;
  const auto taken = first.local_endpoint();
  // SO_REUSEADDR does not let a second listener share a listening port.
  Listener second(io.get_executor());
  EXPECT_FALSE(second.Open(taken, error));
  EXPECT_NE(error.find("cannot listen on 127.0.0.1:" + std::to_string(taken.port())),
            std::string::npos)
      << error;
  EXPECT_FALSE(second.is_open());
}

TEST(Listener, HandsEverySocketOverUntilClosed) {
  asio::io_context io;
  Listener listener(io.get_executor());
  std::string error;
  ASSERT_TRUE(listener.Open({asio::ip::make_address("127.0.0.1"), 0}, error)) << error;
  int accepted = 0;
  listener.Start([&](tcp::socket) { ++accepted; });
  const auto endpoint = listener.local_endpoint();
  for (int i = 0; i < 3; ++i) {
    tcp::socket client(io);
    client.connect(endpoint);
    io.run_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(accepted, 3);
  EXPECT_EQ(listener.stats().accepted, 3u);
  listener.Close();
  EXPECT_FALSE(listener.is_open());
  boost::system::error_code ec;
  tcp::socket late(io);
  late.connect(endpoint, ec);
  io.run_for(std::chrono::milliseconds(50));
  EXPECT_EQ(accepted, 3);  // refused, or at least never handed over
}

TEST(Listener, TransientErrorsAreTheOnesThatPass) {
  for (int e : {EMFILE, ENFILE, ENOBUFS, ENOMEM, ECONNABORTED, EPERM}) {
    EXPECT_TRUE(IsTransientAcceptError({e, boost::system::system_category()})) << e;
  }
  EXPECT_FALSE(IsTransientAcceptError({EBADF, boost::system::system_category()}));
  EXPECT_FALSE(IsTransientAcceptError({EINVAL, boost::system::system_category()}));
}

// A server at RLIMIT_NOFILE 64 is flooded with 150 idle connections: it accepts what it can,
// runs out of descriptors, and must neither spin (CPU) nor write a line per failure (log), and
// must accept again once the connections go.
TEST(Listener, SurvivesRunningOutOfDescriptors) {
  const std::string log_path = (std::filesystem::temp_directory_path() /
                                ("listener-emfile-" + std::to_string(::getpid()) + ".log"))
                                   .string();
  std::filesystem::remove(log_path);
  test::ForkedServer child(64, [&](const auto& report) {
    ::signal(SIGPIPE, SIG_IGN);
    auto logger = std::make_shared<spdlog::logger>(
        "listener", std::make_shared<spdlog::sinks::basic_file_sink_mt>(log_path));
    logger->flush_on(spdlog::level::trace);
    asio::io_context io;
    Listener listener(io.get_executor());
    std::string error;
    if (!listener.Open({asio::ip::make_address("127.0.0.1"), 0}, error)) return;
    ListenerOptions options;
    options.logger = logger;
    options.name = "test listener";
    options.max_pause = std::chrono::milliseconds(200);
    options.log_interval = std::chrono::milliseconds(500);
    // Each connection: "hi", then held open until the client closes it.
    listener.Start(
        [&io](tcp::socket socket) {
          asio::co_spawn(
              io,
              [socket = std::move(socket)]() mutable -> asio::awaitable<void> {
                boost::system::error_code ec;
                co_await asio::async_write(socket, asio::buffer("hi", 2),
                                           asio::redirect_error(asio::use_awaitable, ec));
                char sink[64];
                while (!ec) {
                  co_await socket.async_read_some(asio::buffer(sink),
                                                  asio::redirect_error(asio::use_awaitable, ec));
                }
              },
              asio::detached);
        },
        options);
    report({listener.port()});
    io.run();
  });
  ASSERT_EQ(child.ports().size(), 1u);
  const int port = child.ports()[0];

  std::vector<int> clients;
  for (int i = 0; i < 150; ++i) {
    const int fd = test::ConnectLoopback(port);
    ASSERT_GE(fd, 0);
    clients.push_back(fd);
  }
  int served = 0;
  for (int fd : clients) served += test::ReadFor(fd, std::chrono::milliseconds(20)) == "hi";
  EXPECT_GT(served, 10);
  EXPECT_LT(served, 64) << "the descriptor limit did not bite";

  // Out of descriptors for 2 s: a spinning loop would burn about 2 s of CPU here.
  const double cpu_before = child.CpuSeconds();
  std::this_thread::sleep_for(std::chrono::seconds(2));
  const double cpu_spent = child.CpuSeconds() - cpu_before;
  EXPECT_LT(cpu_spent, 0.4) << "the accept loop spins while out of descriptors";
  ASSERT_TRUE(child.Alive());

  for (int fd : clients) ::close(fd);
  clients.clear();
  // The listener accepts again: a new client is served within a few seconds.
  std::string reply;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (reply != "hi" && std::chrono::steady_clock::now() < deadline) {
    const int fd = test::ConnectLoopback(port);
    ASSERT_GE(fd, 0);
    reply = test::ReadFor(fd, std::chrono::milliseconds(500));
    ::close(fd);
  }
  EXPECT_EQ(reply, "hi") << "the listener does not accept after the descriptors came back";

  // About 3 s of failures at one line per 0.5 s: a handful of lines, each with a count.
  const std::string log = test::ReadFile(log_path);
  const auto lines = test::CountLines(log, "test listener: accept failed");
  EXPECT_GE(lines, 1u) << log;
  EXPECT_LE(lines, 12u) << log;
  EXPECT_NE(log.find("Too many open files"), std::string::npos) << log;
  std::filesystem::remove(log_path);
}

}  // namespace
}  // namespace tunnelkit::net
