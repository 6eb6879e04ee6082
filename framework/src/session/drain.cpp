#include "tunnelkit/session/drain.hpp"

#include <map>
#include <utility>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace tunnelkit::session {

struct DrainTracker::State {
  explicit State(boost::asio::any_io_executor executor) : wake(executor) {}

  void Release(std::uint64_t id) {
    if (in_flight.erase(id) == 0) return;
    // Waiters sleep on `wake` until the deadline; cancelling it makes them look again.
    if (draining && in_flight.empty()) wake.cancel();
  }

  std::map<std::uint64_t, std::function<void()>> in_flight;  // id -> cut-off callback
  std::uint64_t next_id = 1;
  bool draining = false;
  std::optional<std::chrono::steady_clock::time_point> deadline;
  bool cut_off_done = false;
  boost::asio::steady_timer wake;
};

DrainTracker::Guard::Guard(Guard&& other) noexcept
    : state_(std::move(other.state_)), id_(other.id_) {
  other.state_.reset();
}

DrainTracker::Guard& DrainTracker::Guard::operator=(Guard&& other) noexcept {
  if (this != &other) {
    Release();
    state_ = std::move(other.state_);
    id_ = other.id_;
    other.state_.reset();
  }
  return *this;
}

void DrainTracker::Guard::Release() {
  if (!state_) return;
  auto state = std::move(state_);
  state_.reset();
  state->Release(id_);
}

DrainTracker::DrainTracker(boost::asio::any_io_executor executor)
    : executor_(executor), state_(std::make_shared<State>(executor)) {}

DrainTracker::~DrainTracker() = default;

std::optional<DrainTracker::Guard> DrainTracker::TryBegin(std::function<void()> on_cut_off) {
  if (state_->draining) return std::nullopt;
  const std::uint64_t id = state_->next_id++;
  state_->in_flight.emplace(id, std::move(on_cut_off));
  return Guard(state_, id);
}

std::size_t DrainTracker::in_flight() const {
  return state_->in_flight.size();
}

bool DrainTracker::draining() const {
  return state_->draining;
}

namespace {
using Clock = std::chrono::steady_clock;
}  // namespace

// Draining starts when Drain() is called, not when its coroutine first runs, so that work
// arriving in between is already refused.
boost::asio::awaitable<DrainResult> DrainTracker::Drain(std::chrono::milliseconds grace) {
  const auto start = Clock::now();
  state_->draining = true;
  const auto deadline = start + grace;
  if (!state_->deadline || deadline < *state_->deadline) state_->deadline = deadline;
  return WaitDrained(state_, start);
}

// A free coroutine holding the state: the tracker may be destroyed while it waits.
boost::asio::awaitable<DrainResult> DrainTracker::WaitDrained(std::shared_ptr<State> state,
                                                              Clock::time_point start) {
  auto elapsed = [&] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  };
  for (;;) {
    if (state->in_flight.empty()) co_return DrainResult{true, 0, elapsed()};
    if (Clock::now() >= *state->deadline) break;
    // Every waiter sleeps on the same timer; only move its expiry when it changes, since
    // moving it wakes (cancels) the other waiters.
    if (state->wake.expiry() != *state->deadline) state->wake.expires_at(*state->deadline);
    boost::system::error_code ec;
    co_await state->wake.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
  }

  const std::size_t cut_off = state->in_flight.size();
  if (!state->cut_off_done) {
    state->cut_off_done = true;
    // The callbacks typically reset streams, which releases their guards: run a copy.
    std::vector<std::function<void()>> callbacks;
    for (auto& [id, callback] : state->in_flight) {
      if (callback) callbacks.push_back(callback);
    }
    for (auto& callback : callbacks) callback();
  }
  co_return DrainResult{false, cut_off, elapsed()};
}

void DrainTracker::StartDrain(std::chrono::milliseconds grace,
                              std::function<void(DrainResult)> on_done) {
  boost::asio::co_spawn(
      executor_, Drain(grace),
      [on_done = std::move(on_done)](std::exception_ptr error, DrainResult result) {
        if (error) std::rethrow_exception(error);
        if (on_done) on_done(result);
      });
}

}  // namespace tunnelkit::session
