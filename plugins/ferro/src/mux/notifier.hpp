// A wake-up signal for coroutines on one io_context thread (Boost 1.74 has no channels): a
// timer that never expires, cancelled to wake every waiter. Waiters re-check their condition
// after waking, so a Notify with nobody waiting is never lost.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace tunnelkit::ferro {

class Notifier {
 public:
  explicit Notifier(const boost::asio::any_io_executor& executor)
      : timer_(executor, boost::asio::steady_timer::time_point::max()) {}

  boost::asio::awaitable<void> Wait() {
    boost::system::error_code ec;
    co_await timer_.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
  }
  void Notify() { timer_.cancel(); }

 private:
  boost::asio::steady_timer timer_;
};

}  // namespace tunnelkit::ferro
