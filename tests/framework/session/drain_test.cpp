#include "tunnelkit/session/drain.hpp"

#include <chrono>
#include <memory>
#include <optional>
#include <vector>

#include <gtest/gtest.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace tunnelkit::session {
namespace {

namespace asio = boost::asio;
using std::chrono::milliseconds;

// A unit of work: holds its guard for `duration`, then finishes.
asio::awaitable<void> Work(DrainTracker::Guard guard, milliseconds duration, int& finished) {
  asio::steady_timer timer(co_await asio::this_coro::executor, duration);
  co_await timer.async_wait(asio::use_awaitable);
  ++finished;
  guard.Release();
}

std::optional<DrainResult> DrainAndRun(asio::io_context& io, DrainTracker& tracker,
                                       milliseconds grace) {
  std::optional<DrainResult> result;
  tracker.StartDrain(grace, [&](DrainResult r) { result = r; });
  io.run_for(milliseconds(3000));
  return result;
}

TEST(DrainTest, RefusesNewWorkOnceDrainingStarted) {
  asio::io_context io;
  DrainTracker tracker(io.get_executor());
  auto first = tracker.TryBegin();
  ASSERT_TRUE(first.has_value());
  EXPECT_TRUE(*first);
  EXPECT_EQ(tracker.in_flight(), 1u);
  EXPECT_FALSE(tracker.draining());

  std::optional<DrainResult> result;
  tracker.StartDrain(milliseconds(1000), [&](DrainResult r) { result = r; });
  // Refused synchronously, before the drain coroutine even ran.
  EXPECT_TRUE(tracker.draining());
  EXPECT_FALSE(tracker.TryBegin().has_value());
  EXPECT_EQ(tracker.in_flight(), 1u);

  asio::steady_timer finish(io, milliseconds(20));
  finish.async_wait([&](boost::system::error_code) {
    EXPECT_FALSE(tracker.TryBegin().has_value());
    first->Release();
  });
  io.run_for(milliseconds(3000));
  ASSERT_TRUE(result.has_value());
  EXPECT_TRUE(result->completed);
  EXPECT_FALSE(tracker.TryBegin().has_value()) << "draining is one-way";
}

TEST(DrainTest, InFlightWorkIsAllowedToFinish) {
  asio::io_context io;
  DrainTracker tracker(io.get_executor());
  int finished = 0;
  for (int ms : {10, 30, 50}) {
    auto guard = tracker.TryBegin([] { ADD_FAILURE() << "cut off"; });
    ASSERT_TRUE(guard.has_value());
    asio::co_spawn(io, Work(std::move(*guard), milliseconds(ms), finished), asio::detached);
  }
  EXPECT_EQ(tracker.in_flight(), 3u);
  auto result = DrainAndRun(io, tracker, milliseconds(2000));
  ASSERT_TRUE(result.has_value());
  EXPECT_TRUE(result->completed);
  EXPECT_EQ(result->cut_off, 0u);
  EXPECT_EQ(finished, 3);
  EXPECT_EQ(tracker.in_flight(), 0u);
  EXPECT_GE(result->elapsed.count(), 45);    // waited for the 50 ms unit
  EXPECT_LT(result->elapsed.count(), 1000);  // but not for the grace period
}

TEST(DrainTest, GracePeriodExpiryCutsOffTheRest) {
  asio::io_context io;
  DrainTracker tracker(io.get_executor());
  int finished = 0;
  auto quick = tracker.TryBegin();
  asio::co_spawn(io, Work(std::move(*quick), milliseconds(10), finished), asio::detached);

  // A stuck stream whose cut-off resets it (which releases its guard)...
  std::optional<DrainTracker::Guard> stuck_with_reset;
  bool reset_called = false;
  stuck_with_reset = tracker.TryBegin([&] {
    reset_called = true;
    stuck_with_reset.reset();
  });
  // ...and one without a callback, which the owner releases whenever it likes.
  auto stuck_plain = tracker.TryBegin();
  ASSERT_TRUE(stuck_with_reset.has_value() && stuck_plain.has_value());

  auto result = DrainAndRun(io, tracker, milliseconds(50));
  ASSERT_TRUE(result.has_value());
  EXPECT_FALSE(result->completed);
  EXPECT_EQ(result->cut_off, 2u);
  EXPECT_GE(result->elapsed.count(), 50);
  EXPECT_LT(result->elapsed.count(), 1000);
  EXPECT_EQ(finished, 1);
  EXPECT_TRUE(reset_called);
  EXPECT_EQ(tracker.in_flight(), 1u);
  stuck_plain.reset();
  EXPECT_EQ(tracker.in_flight(), 0u);
}

TEST(DrainTest, NothingInFlightCompletesAtOnce) {
  asio::io_context io;
  DrainTracker tracker(io.get_executor());
  { auto guard = tracker.TryBegin(); }  // begun and finished before the drain
  auto result = DrainAndRun(io, tracker, milliseconds(5000));
  ASSERT_TRUE(result.has_value());
  EXPECT_TRUE(result->completed);
  EXPECT_LT(result->elapsed.count(), 100);
}

TEST(DrainTest, ConcurrentDrainsShareTheEarliestDeadline) {
  asio::io_context io;
  DrainTracker tracker(io.get_executor());
  auto stuck = tracker.TryBegin();
  std::optional<DrainResult> long_drain, short_drain;
  tracker.StartDrain(milliseconds(5000), [&](DrainResult r) { long_drain = r; });
  tracker.StartDrain(milliseconds(40), [&](DrainResult r) { short_drain = r; });
  io.run_for(milliseconds(3000));
  ASSERT_TRUE(long_drain.has_value() && short_drain.has_value());
  EXPECT_EQ(long_drain->cut_off, 1u);
  EXPECT_EQ(short_drain->cut_off, 1u);
  EXPECT_LT(long_drain->elapsed.count(), 1000);
}

TEST(DrainTest, MovedGuardCountsOnceAndMayOutliveTracker) {
  asio::io_context io;
  std::optional<DrainTracker::Guard> survivor;
  {
    DrainTracker tracker(io.get_executor());
    auto a = tracker.TryBegin();
    DrainTracker::Guard moved = std::move(*a);
    EXPECT_FALSE(*a);
    EXPECT_EQ(tracker.in_flight(), 1u);
    a->Release();  // released husk: no effect
    EXPECT_EQ(tracker.in_flight(), 1u);
    DrainTracker::Guard other = std::move(*tracker.TryBegin());
    EXPECT_EQ(tracker.in_flight(), 2u);
    other = std::move(moved);  // releases what `other` held
    EXPECT_EQ(tracker.in_flight(), 1u);
    survivor = std::move(other);
  }
  survivor.reset();  // tracker gone: releasing is harmless
  SUCCEED();
}

}  // namespace
}  // namespace tunnelkit::session
