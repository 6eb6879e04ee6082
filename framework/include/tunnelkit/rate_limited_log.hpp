// One log line per interval for a message that can repeat as fast as an attacker sends
// packets (accept failures, refused handshakes): the first occurrence is logged at once, later
// ones within the interval are counted, and the next line that goes out says how many were
// left out. Not thread-safe: one per io_context strand, like the loggers' users.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include <spdlog/spdlog.h>

namespace tunnelkit {

class RateLimitedLog {
 public:
  using Clock = std::chrono::steady_clock;

  explicit RateLimitedLog(Clock::duration interval = std::chrono::seconds(1))
      : interval_(interval) {}

  // True when a line may go out now; `suppressed` then holds how many were left out since the
  // previous one. False counts this occurrence as left out.
  bool Allow(std::uint64_t& suppressed, Clock::time_point now = Clock::now());

  // Logs `format` with `args` (formatted only when the line goes out), followed by
  // " (N similar lines suppressed)" when some were left out.
  template <class... Args>
  void Log(spdlog::logger& logger, spdlog::level::level_enum level,
           spdlog::format_string_t<Args...> format, Args&&... args) {
    ++occurrences_;
    if (!logger.should_log(level)) return;
    std::uint64_t suppressed = 0;
    if (!Allow(suppressed)) return;
    std::string text = fmt::format(format, std::forward<Args>(args)...);
    if (suppressed > 0) text += " (" + std::to_string(suppressed) + " similar lines suppressed)";
    logger.log(level, "{}", text);
  }

  std::uint64_t occurrences() const { return occurrences_; }  // logged or not
  std::uint64_t lines() const { return lines_; }              // actually written

 private:
  Clock::duration interval_;
  Clock::time_point next_{};
  std::uint64_t suppressed_ = 0;
  std::uint64_t occurrences_ = 0;
  std::uint64_t lines_ = 0;
};

}  // namespace tunnelkit
