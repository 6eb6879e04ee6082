#include "tunnelkit/session/liveness.hpp"

#include <chrono>
#include <memory>
#include <optional>

#include <gtest/gtest.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace tunnelkit::session {
namespace {

namespace asio = boost::asio;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

long MillisBetween(Clock::time_point from, Clock::time_point to) {
  return static_cast<long>(std::chrono::duration_cast<milliseconds>(to - from).count());
}

TEST(LivenessTest, FiresAfterSilenceAndPingsMeanwhile) {
  asio::io_context io;
  int pings = 0;
  std::optional<Clock::time_point> died;
  LivenessMonitor monitor(
      io.get_executor(), {milliseconds(10), milliseconds(80)}, [&] { ++pings; },
      [&] { died = Clock::now(); });
  const auto start = Clock::now();
  monitor.Start();
  io.run_for(milliseconds(2000));  // returns once the monitor is done
  ASSERT_TRUE(died.has_value());
  const long lived = MillisBetween(start, *died);
  EXPECT_GE(lived, 80);
  EXPECT_LT(lived, 500);
  EXPECT_TRUE(monitor.dead());
  EXPECT_FALSE(monitor.running());
  EXPECT_GE(pings, 2);               // about one per 10 ms while the peer was silent
  EXPECT_LE(pings, lived / 10 + 1);  // never faster than the interval
  EXPECT_EQ(monitor.pings_sent(), static_cast<std::uint64_t>(pings));
}

TEST(LivenessTest, StaysAliveWhileActivityContinuesThenFires) {
  asio::io_context io;
  std::optional<Clock::time_point> died;
  LivenessMonitor monitor(
      io.get_executor(), {milliseconds(0), milliseconds(80)}, [] { FAIL() << "pinged"; },
      [&] { died = Clock::now(); });
  monitor.Start();

  // The "peer" is active every 10 ms for 200 ms, then falls silent.
  const auto start = Clock::now();
  Clock::time_point last_activity = start;
  asio::steady_timer activity(io);
  std::function<void()> tick = [&] {
    if (Clock::now() - start >= milliseconds(200)) return;
    monitor.OnPeerActivity();
    last_activity = Clock::now();
    activity.expires_after(milliseconds(10));
    activity.async_wait([&](boost::system::error_code ec) {
      if (!ec) tick();
    });
  };
  tick();
  io.run_for(milliseconds(2000));
  ASSERT_TRUE(died.has_value());
  EXPECT_GE(MillisBetween(start, *died), 200) << "declared dead while the peer was active";
  EXPECT_GE(MillisBetween(last_activity, *died), 80);
  EXPECT_LT(MillisBetween(last_activity, *died), 500);
}

TEST(LivenessTest, StopPreventsCallbacks) {
  asio::io_context io;
  int pings = 0;
  bool died = false;
  LivenessMonitor monitor(
      io.get_executor(), {milliseconds(10), milliseconds(30)}, [&] { ++pings; },
      [&] { died = true; });
  monitor.Start();
  asio::steady_timer stopper(io, milliseconds(15));
  stopper.async_wait([&](boost::system::error_code) { monitor.Stop(); });
  asio::steady_timer observe(io, milliseconds(150));
  observe.async_wait([](boost::system::error_code) {});
  io.run();
  EXPECT_FALSE(died);
  EXPECT_EQ(pings, 1);
  EXPECT_FALSE(monitor.running());
}

TEST(LivenessTest, DeadCallbackMayDestroyTheMonitor) {
  asio::io_context io;
  bool died = false;
  std::unique_ptr<LivenessMonitor> monitor;
  monitor = std::make_unique<LivenessMonitor>(
      io.get_executor(), LivenessMonitor::Options{milliseconds(5), milliseconds(20)}, [] {},
      [&] {
        died = true;
        monitor.reset();
      });
  monitor->Start();
  io.run_for(milliseconds(1000));
  EXPECT_TRUE(died);
  EXPECT_EQ(monitor, nullptr);
}

// Pings are real bytes over a TCP connection on 127.0.0.1; the peer answers each 'P' with 'O'
// until told to stop answering (a hung peer whose socket stays open).
TEST(LivenessTest, TcpPingPongKeepsAliveAndSilentPeerIsDetected) {
  using asio::ip::tcp;
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  tcp::socket client(io);
  client.connect(acceptor.local_endpoint());
  tcp::socket peer = acceptor.accept();

  bool peer_answers = true;
  int answered = 0;
  auto peer_loop = [&]() -> asio::awaitable<void> {
    char byte;
    boost::system::error_code ec;
    for (;;) {
      co_await peer.async_read_some(asio::buffer(&byte, 1),
                                    asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return;
      if (byte == 'P' && peer_answers) {
        ++answered;
        co_await asio::async_write(peer, asio::buffer("O", 1),
                                   asio::redirect_error(asio::use_awaitable, ec));
      }
    }
  };

  std::optional<Clock::time_point> died;
  LivenessMonitor monitor(
      io.get_executor(), {milliseconds(10), milliseconds(100)},
      [&] {
        boost::system::error_code ignored;
        asio::write(client, asio::buffer("P", 1), ignored);
      },
      [&] {
        died = Clock::now();
        client.close();  // what a backend does: end the session
      });
  int pongs = 0;
  auto client_reader = [&]() -> asio::awaitable<void> {
    char byte;
    boost::system::error_code ec;
    for (;;) {
      co_await client.async_read_some(asio::buffer(&byte, 1),
                                      asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return;
      ++pongs;
      monitor.OnPeerActivity();
    }
  };
  asio::co_spawn(io, peer_loop(), asio::detached);
  asio::co_spawn(io, client_reader(), asio::detached);
  const auto start = Clock::now();
  monitor.Start();
  asio::steady_timer mute(io, milliseconds(200));
  Clock::time_point muted_at;
  mute.async_wait([&](boost::system::error_code) {
    EXPECT_FALSE(died.has_value()) << "dead while the peer answered pings";
    peer_answers = false;
    muted_at = Clock::now();
  });
  asio::steady_timer bound(io, milliseconds(2000));
  bound.async_wait([&](boost::system::error_code) { peer.close(); });
  asio::steady_timer finish(io);
  std::function<void()> poll = [&] {
    if (died) {
      bound.cancel();
      peer.close();
      return;
    }
    finish.expires_after(milliseconds(5));
    finish.async_wait([&](boost::system::error_code) { poll(); });
  };
  poll();
  io.run_for(milliseconds(3000));

  ASSERT_TRUE(died.has_value());
  EXPECT_GE(MillisBetween(start, *died), 200);
  EXPECT_GE(MillisBetween(muted_at, *died), 80);  // the last pong came at most ~10 ms earlier
  EXPECT_LT(MillisBetween(muted_at, *died), 600);
  EXPECT_GE(answered, 5);
  EXPECT_GE(pongs, 5);
}

}  // namespace
}  // namespace tunnelkit::session
