#include "tunnelkit/mux/wake_signal.hpp"

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace tunnelkit::mux {

WakeSignal::WakeSignal(const boost::asio::any_io_executor& executor) : timer_(executor) {}

boost::asio::awaitable<void> WakeSignal::Wait() {
  timer_.expires_at(boost::asio::steady_timer::time_point::max());
  boost::system::error_code ec;
  co_await timer_.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
}

}  // namespace tunnelkit::mux
