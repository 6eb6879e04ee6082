// Connection caps, per-source token buckets, the source key and the limit checks.
#include <gtest/gtest.h>

#include "tunnelkit/net/connection_limiter.hpp"
#include "tunnelkit/net/server_limits.hpp"
#include "tunnelkit/net/source_address.hpp"
#include "tunnelkit/net/source_rate_limiter.hpp"

namespace tunnelkit::net {
namespace {

using boost::asio::ip::make_address;

TEST(SourceKey, IPv4MappedIsIPv4AndIPv6CountsPerSlash64) {
  EXPECT_EQ(SourceKeyOf(make_address("192.0.2.7")), SourceKeyOf(make_address("::ffff:192.0.2.7")));
  EXPECT_NE(SourceKeyOf(make_address("192.0.2.7")), SourceKeyOf(make_address("192.0.2.8")));
  EXPECT_EQ(SourceKeyOf(make_address("2001:db8:1:2::1")),
            SourceKeyOf(make_address("2001:db8:1:2:ffff::9")));
  EXPECT_NE(SourceKeyOf(make_address("2001:db8:1:2::1")),
            SourceKeyOf(make_address("2001:db8:1:3::1")));
  EXPECT_EQ(SourceKeyText(SourceKeyOf(make_address("::ffff:192.0.2.7"))), "192.0.2.7");
  EXPECT_EQ(SourceKeyText(SourceKeyOf(make_address("2001:db8:1:2::1"))), "2001:db8:1:2::/64");
}

TEST(ConnectionLimiter, CapsOverallAndPerSourceAndFreesOnRelease) {
  ConnectionLimiter limiter({3, 2});
  const auto a = make_address("127.0.0.1");
  const auto b = make_address("127.0.0.2");
  ConnectionLimiter::Refusal why{};
  auto a1 = limiter.TryAcquire(a);
  auto a2 = limiter.TryAcquire(a);
  ASSERT_TRUE(a1 && a2);
  EXPECT_FALSE(limiter.TryAcquire(a, &why));
  EXPECT_EQ(why, ConnectionLimiter::Refusal::kPerSource);
  auto b1 = limiter.TryAcquire(b);
  ASSERT_TRUE(b1);
  EXPECT_FALSE(limiter.TryAcquire(b, &why));
  EXPECT_EQ(why, ConnectionLimiter::Refusal::kTotal);
  EXPECT_EQ(limiter.active(), 3u);
  EXPECT_EQ(limiter.active(a), 2u);
  EXPECT_EQ(limiter.refused(), 2u);
  a1->Release();
  a1->Release();  // once only
  EXPECT_EQ(limiter.active(), 2u);
  auto moved = std::move(*a2);
  a2.reset();
  EXPECT_EQ(limiter.active(a), 1u);  // the moved-to lease still holds it
  {
    auto a3 = limiter.TryAcquire(a);
    EXPECT_TRUE(a3);
  }
  EXPECT_EQ(limiter.active(), 2u);
}

TEST(ConnectionLimiter, ZeroMeansNoCapAndLeasesOutliveTheLimiter) {
  std::optional<ConnectionLimiter::Lease> lease;
  {
    ConnectionLimiter limiter({0, 0});
    for (int i = 0; i < 1000; ++i) EXPECT_TRUE(limiter.TryAcquire(make_address("::1")));
    lease = limiter.TryAcquire(make_address("::1"));
  }
  lease.reset();  // no use after free: the lease keeps the counts alive
}

TEST(SourceRateLimiter, BurstThenRatePerSource) {
  SourceRateLimiter limiter({2.0, 3, 16});
  const auto a = make_address("10.0.0.1");
  const auto b = make_address("10.0.0.2");
  const auto t0 = SourceRateLimiter::Clock::now();
  EXPECT_TRUE(limiter.Allowed(a, t0));
  EXPECT_TRUE(limiter.Spend(a, t0));
  EXPECT_TRUE(limiter.Spend(a, t0));
  EXPECT_TRUE(limiter.Spend(a, t0));
  EXPECT_FALSE(limiter.Allowed(a, t0));
  EXPECT_FALSE(limiter.Spend(a, t0));
  EXPECT_TRUE(limiter.Allowed(b, t0));  // another source is not touched
  // 2 per second: one more after half a second.
  EXPECT_TRUE(limiter.Allowed(a, t0 + std::chrono::milliseconds(500)));
  EXPECT_TRUE(limiter.Spend(a, t0 + std::chrono::milliseconds(500)));
  EXPECT_FALSE(limiter.Allowed(a, t0 + std::chrono::milliseconds(600)));
}

TEST(SourceRateLimiter, TableStaysBounded) {
  SourceRateLimiter limiter({1.0, 2, 8});
  const auto t0 = SourceRateLimiter::Clock::now();
  for (int i = 0; i < 1000; ++i) {
    limiter.Spend(make_address("10.1." + std::to_string(i / 256) + "." + std::to_string(i % 256)),
                  t0);
  }
  EXPECT_LE(limiter.tracked_sources(), 8u);
}

TEST(SourceRateLimiter, BurstZeroTurnsItOff) {
  SourceRateLimiter limiter({0, 0, 8});
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(limiter.Spend(make_address("10.0.0.1")));
  EXPECT_TRUE(limiter.Allowed(make_address("10.0.0.1")));
}

TEST(ServerLimits, ChecksNameTheField) {
  ServerLimits limits;
  EXPECT_TRUE(CheckServerLimits(limits, "ferro.").empty());
  limits.public_connections = {10, 20};
  limits.unauthenticated = {5, 6};
  limits.auth_failures.rate = -1;
  limits.auth_failures.burst = 0.5;
  const auto issues = CheckServerLimits(limits, "zlayer.");
  ASSERT_EQ(issues.size(), 4u);
  EXPECT_EQ(issues[0].field, "zlayer.max_public_connections_per_source");
  EXPECT_EQ(issues[1].field, "zlayer.max_unauthenticated_per_source");
  EXPECT_EQ(issues[2].field, "zlayer.auth_failure_rate");
  EXPECT_EQ(issues[3].field, "zlayer.auth_failure_burst");
}

}  // namespace
}  // namespace tunnelkit::net
