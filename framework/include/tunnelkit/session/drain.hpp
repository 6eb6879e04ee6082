// DrainTracker: graceful shutdown of a session's in-flight work (streams, requests). Each unit
// of work holds a Guard from TryBegin(); once Drain() starts, TryBegin() refuses new work, and
// Drain() completes when the last guard is released or the grace period ran out. At expiry the
// cut-off callbacks of the work still in flight run (reset those streams), and the result says
// how many were cut off.
//
// Threading: one executor thread. Guards may outlive the tracker (releasing them is then a
// no-op); Drain() keeps what it needs alive while it waits.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

namespace tunnelkit::session {

struct DrainResult {
  bool completed = false;   // every in-flight unit finished within the grace period
  std::size_t cut_off = 0;  // units still in flight when the grace period expired
  std::chrono::milliseconds elapsed{0};
};

class DrainTracker {
 public:
  struct State;

  // Marks one unit of in-flight work; releasing it (destruction, Release()) ends the unit.
  class Guard {
   public:
    Guard() = default;
    Guard(Guard&& other) noexcept;
    Guard& operator=(Guard&& other) noexcept;
    Guard(const Guard&) = delete;
    Guard& operator=(const Guard&) = delete;
    ~Guard() { Release(); }
    void Release();
    explicit operator bool() const { return state_ != nullptr; }

   private:
    friend class DrainTracker;
    Guard(std::shared_ptr<State> state, std::uint64_t id) : state_(std::move(state)), id_(id) {}
    std::shared_ptr<State> state_;
    std::uint64_t id_ = 0;
  };

  explicit DrainTracker(boost::asio::any_io_executor executor);
  ~DrainTracker();
  DrainTracker(const DrainTracker&) = delete;
  DrainTracker& operator=(const DrainTracker&) = delete;

  // A guard for new work, or nullopt once draining started (refuse the stream/request).
  // `on_cut_off` runs if the work is still in flight when the grace period expires.
  std::optional<Guard> TryBegin(std::function<void()> on_cut_off = {});

  // Refuses new work from now on and waits for the in-flight work, at most `grace`.
  // Several concurrent Drain() calls share the earliest deadline.
  boost::asio::awaitable<DrainResult> Drain(std::chrono::milliseconds grace);
  // Callback form of Drain() for non-coroutine callers (e.g. Runtime::OnStop handlers).
  void StartDrain(std::chrono::milliseconds grace, std::function<void(DrainResult)> on_done);

  std::size_t in_flight() const;
  bool draining() const;

 private:
  static boost::asio::awaitable<DrainResult> WaitDrained(
      std::shared_ptr<State> state, std::chrono::steady_clock::time_point start);

  boost::asio::any_io_executor executor_;
  std::shared_ptr<State> state_;
};

// Alias under the name used by the design notes.
using GracefulShutdown = DrainTracker;

}  // namespace tunnelkit::session
