#include "tunnelkit/session/backoff.hpp"

#include <chrono>
#include <vector>

#include <gtest/gtest.h>

#include "tunnelkit/config/v1/tunnel.pb.h"
#include "tunnelkit/plugin.hpp"

namespace tunnelkit::session {
namespace {

using std::chrono::milliseconds;

BackoffPolicy NoJitter() {
  BackoffPolicy policy;
  policy.base = milliseconds(100);
  policy.factor = 2.0;
  policy.cap = milliseconds(1000);
  policy.jitter = 0.0;
  return policy;
}

TEST(BackoffTest, DefaultsMatchConfigProto) {
  BackoffPolicy policy;
  EXPECT_EQ(policy.base, milliseconds(1000));
  EXPECT_DOUBLE_EQ(policy.factor, 2.0);
  EXPECT_EQ(policy.cap, milliseconds(60000));
  EXPECT_DOUBLE_EQ(policy.jitter, 0.3);
  EXPECT_EQ(policy.max_attempts, 0u);
}

TEST(BackoffTest, GrowsExponentiallyUpToCap) {
  Backoff backoff(NoJitter(), 1);
  std::vector<long> delays;
  for (int i = 0; i < 8; ++i) delays.push_back(backoff.Next().value().count());
  EXPECT_EQ(delays, (std::vector<long>{100, 200, 400, 800, 1000, 1000, 1000, 1000}));
  EXPECT_EQ(backoff.attempts(), 8u);
}

TEST(BackoffTest, NonIntegerFactor) {
  BackoffPolicy policy = NoJitter();
  policy.factor = 1.5;
  Backoff backoff(policy, 1);
  EXPECT_EQ(backoff.Next(), milliseconds(100));
  EXPECT_EQ(backoff.Next(), milliseconds(150));
  EXPECT_EQ(backoff.Next(), milliseconds(225));
}

TEST(BackoffTest, HugeAttemptCountStaysAtCap) {
  Backoff backoff(NoJitter(), 1);
  EXPECT_EQ(backoff.Nominal(5000), milliseconds(1000));
  EXPECT_EQ(backoff.Nominal(0), milliseconds(100));
}

TEST(BackoffTest, JitterStaysWithinBoundsAndVaries) {
  BackoffPolicy policy = NoJitter();
  policy.jitter = 0.3;
  policy.cap = milliseconds(60000);
  Backoff backoff(policy, 42);
  bool saw_reduced = false;
  for (std::uint32_t round = 0; round < 200; ++round) {
    if (round % 10 == 0) backoff.Reset();
    const auto nominal = backoff.Nominal(backoff.attempts());
    const auto delay = backoff.Next().value();
    EXPECT_LE(delay, nominal);
    EXPECT_GE(delay.count(), static_cast<long>(nominal.count() * 0.7) - 1);
    if (delay < nominal - milliseconds(2)) saw_reduced = true;
  }
  EXPECT_TRUE(saw_reduced) << "jitter never changed a delay";
}

TEST(BackoffTest, JitterNeverExceedsCap) {
  BackoffPolicy policy = NoJitter();
  policy.jitter = 1.0;
  Backoff backoff(policy, 7);
  for (int i = 0; i < 100; ++i) {
    const auto delay = backoff.Next().value();
    EXPECT_GE(delay, milliseconds(0));
    EXPECT_LE(delay, milliseconds(1000));
  }
}

TEST(BackoffTest, SameSeedSameSequenceOtherSeedDiffers) {
  BackoffPolicy policy;  // defaults, jitter 0.3
  Backoff a(policy, 1234), b(policy, 1234), c(policy, 999);
  std::vector<long> seq_a, seq_b, seq_c;
  for (int i = 0; i < 10; ++i) {
    seq_a.push_back(a.Next()->count());
    seq_b.push_back(b.Next()->count());
    seq_c.push_back(c.Next()->count());
  }
  EXPECT_EQ(seq_a, seq_b);
  EXPECT_NE(seq_a, seq_c);
}

TEST(BackoffTest, ScriptedUniformGivesExactDelays) {
  BackoffPolicy policy = NoJitter();
  policy.jitter = 0.5;
  std::vector<double> script{0.0, 0.5, 0.999999};
  std::size_t next = 0;
  Backoff backoff(policy, [&] { return script[next++ % script.size()]; });
  EXPECT_EQ(backoff.Next(), milliseconds(100));  // 100 * (1 - 0)
  EXPECT_EQ(backoff.Next(), milliseconds(150));  // 200 * (1 - 0.25)
  EXPECT_EQ(backoff.Next(), milliseconds(200));  // 400 * (1 - ~0.5)
}

TEST(BackoffTest, ResetStartsOver) {
  Backoff backoff(NoJitter(), 1);
  backoff.Next();
  backoff.Next();
  backoff.Next();
  EXPECT_EQ(backoff.attempts(), 3u);
  backoff.Reset();
  EXPECT_EQ(backoff.attempts(), 0u);
  EXPECT_EQ(backoff.Next(), milliseconds(100));
}

TEST(BackoffTest, ExhaustsAfterMaxAttemptsUntilReset) {
  BackoffPolicy policy = NoJitter();
  policy.max_attempts = 3;
  Backoff backoff(policy, 1);
  EXPECT_EQ(backoff.Next(), milliseconds(100));
  EXPECT_EQ(backoff.Next(), milliseconds(200));
  EXPECT_FALSE(backoff.exhausted());
  EXPECT_EQ(backoff.Next(), milliseconds(400));
  EXPECT_TRUE(backoff.exhausted());
  EXPECT_EQ(backoff.Next(), std::nullopt);
  EXPECT_EQ(backoff.Next(), std::nullopt);
  backoff.Reset();
  EXPECT_EQ(backoff.Next(), milliseconds(100));
}

TEST(BackoffTest, ZeroMaxAttemptsIsForever) {
  Backoff backoff(NoJitter(), 1);
  for (int i = 0; i < 10000; ++i) ASSERT_TRUE(backoff.Next().has_value());
}

TEST(BackoffConfigTest, UnsetFieldsTakeDefaults) {
  config::v1::Backoff config;
  BackoffPolicy policy = BackoffPolicyFromConfig(config);
  EXPECT_EQ(policy.base, milliseconds(1000));
  EXPECT_DOUBLE_EQ(policy.factor, 2.0);
  EXPECT_EQ(policy.cap, milliseconds(60000));
  EXPECT_DOUBLE_EQ(policy.jitter, 0.3);
  EXPECT_EQ(policy.max_attempts, 0u);
  EXPECT_EQ(policy.healthy_after, BackoffPolicy{}.healthy_after);
  std::vector<ConfigIssue> issues;
  ValidateBackoffConfig(config, "reconnect", issues);
  EXPECT_TRUE(issues.empty());
}

TEST(BackoffConfigTest, SetFieldsAreUsed) {
  config::v1::Backoff config;
  config.mutable_base()->set_nanos(250000000);
  config.set_factor(3.0);
  config.mutable_cap()->set_seconds(10);
  config.set_jitter(0.1);
  config.set_max_attempts(7);
  config.mutable_healthy_after()->set_seconds(5);
  BackoffPolicy policy = BackoffPolicyFromConfig(config);
  EXPECT_EQ(policy.base, milliseconds(250));
  EXPECT_DOUBLE_EQ(policy.factor, 3.0);
  EXPECT_EQ(policy.cap, milliseconds(10000));
  EXPECT_DOUBLE_EQ(policy.jitter, 0.1);
  EXPECT_EQ(policy.max_attempts, 7u);
  EXPECT_EQ(policy.healthy_after, milliseconds(5000));
}

TEST(BackoffConfigTest, InvalidFieldsAreNamed) {
  config::v1::Backoff config;
  config.set_factor(0.5);
  config.set_jitter(1.5);
  config.mutable_base()->set_seconds(10);
  config.mutable_cap()->set_seconds(2);
  config.mutable_healthy_after()->set_seconds(-1);
  std::vector<ConfigIssue> issues;
  ValidateBackoffConfig(config, "reconnect", issues);
  std::vector<std::string> paths;
  for (const auto& issue : issues) paths.push_back(issue.path);
  EXPECT_EQ(paths, (std::vector<std::string>{"reconnect.healthy_after", "reconnect.factor",
                                             "reconnect.jitter", "reconnect.cap"}));
}

}  // namespace
}  // namespace tunnelkit::session
