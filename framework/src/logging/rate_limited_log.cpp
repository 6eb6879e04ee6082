#include "tunnelkit/rate_limited_log.hpp"

namespace tunnelkit {

bool RateLimitedLog::Allow(std::uint64_t& suppressed, Clock::time_point now) {
  if (now < next_) {
    ++suppressed_;
    return false;
  }
  next_ = now + interval_;
  suppressed = std::exchange(suppressed_, 0);
  ++lines_;
  return true;
}

}  // namespace tunnelkit
