// One line per interval, with the count of lines left out.
#include "tunnelkit/rate_limited_log.hpp"

#include <gtest/gtest.h>

#include <spdlog/sinks/ostream_sink.h>
#include <sstream>
#include <thread>

namespace tunnelkit {
namespace {

TEST(RateLimitedLog, OneLinePerIntervalWithTheSuppressedCount) {
  RateLimitedLog limiter(std::chrono::seconds(1));
  const auto t0 = RateLimitedLog::Clock::now();
  std::uint64_t suppressed = 99;
  EXPECT_TRUE(limiter.Allow(suppressed, t0));
  EXPECT_EQ(suppressed, 0u);
  for (int i = 0; i < 5; ++i)
    EXPECT_FALSE(limiter.Allow(suppressed, t0 + std::chrono::milliseconds(100 * i)));
  EXPECT_TRUE(limiter.Allow(suppressed, t0 + std::chrono::seconds(1)));
  EXPECT_EQ(suppressed, 5u);
  EXPECT_EQ(limiter.lines(), 2u);
}

TEST(RateLimitedLog, WritesTheCountIntoTheNextLine) {
  std::ostringstream out;
  auto logger =
      std::make_shared<spdlog::logger>("t", std::make_shared<spdlog::sinks::ostream_sink_st>(out));
  logger->set_pattern("%v");
  RateLimitedLog limiter(std::chrono::milliseconds(200));
  for (int i = 0; i < 1000; ++i) limiter.Log(*logger, spdlog::level::warn, "failure {}", i);
  EXPECT_EQ(out.str(), "failure 0\n");
  std::this_thread::sleep_for(std::chrono::milliseconds(250));
  limiter.Log(*logger, spdlog::level::warn, "failure {}", 1000);
  EXPECT_EQ(out.str(), "failure 0\nfailure 1000 (999 similar lines suppressed)\n");
  EXPECT_EQ(limiter.occurrences(), 1001u);
  EXPECT_EQ(limiter.lines(), 2u);
  RateLimitedLog quick(std::chrono::nanoseconds(0));
  std::uint64_t s = 0;
  quick.Allow(s);
  EXPECT_TRUE(quick.Allow(s));  // zero interval: every line goes out
}

}  // namespace
}  // namespace tunnelkit
