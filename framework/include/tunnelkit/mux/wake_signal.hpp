// WakeSignal: wakes suspended coroutines (Boost 1.74 has no channels or cancellation slots).
// It is a timer that never expires by itself; Notify() cancels it. Waiters always re-check their
// condition in a loop, so spurious wake-ups are harmless and none can be lost: on one thread,
// the check and the start of the wait run without any other handler in between.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

namespace tunnelkit::mux {

class WakeSignal {
 public:
  explicit WakeSignal(const boost::asio::any_io_executor& executor);
  // Suspends until the next Notify() (or a spurious wake-up).
  boost::asio::awaitable<void> Wait();
  // Wakes every current waiter.
  void Notify() { timer_.cancel(); }

 private:
  boost::asio::steady_timer timer_;
};

}  // namespace tunnelkit::mux
