#include "tunnelkit/session/backoff.hpp"

#include <algorithm>
#include <cmath>
#include <memory>

#include "tunnelkit/config/duration.hpp"
#include "tunnelkit/config/v1/tunnel.pb.h"
#include "tunnelkit/plugin.hpp"

namespace tunnelkit::session {
namespace {

// mt19937_64 mapped to [0, 1) by its top 53 bits: unlike std::uniform_real_distribution this
// mapping is fixed, so a seed gives the same delays with every standard library.
Backoff::UniformSource SeededUniform(std::uint64_t seed) {
  auto engine = std::make_shared<std::mt19937_64>(seed);
  return [engine] { return static_cast<double>((*engine)() >> 11) * 0x1.0p-53; };
}

std::uint64_t RandomSeed() {
  std::random_device device;
  return (static_cast<std::uint64_t>(device()) << 32) ^ device();
}

bool IsSet(const google::protobuf::Duration& d) {
  return d.seconds() != 0 || d.nanos() != 0;
}

std::chrono::milliseconds ToMillis(const google::protobuf::Duration& d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(config::FromProto(d));
}

bool IsNegative(const google::protobuf::Duration& d) {
  return d.seconds() < 0 || d.nanos() < 0;
}

}  // namespace

BackoffPolicy BackoffPolicyFromConfig(const config::v1::Backoff& config) {
  BackoffPolicy policy;
  if (config.has_base() && IsSet(config.base())) policy.base = ToMillis(config.base());
  if (config.factor() != 0) policy.factor = config.factor();
  if (config.has_cap() && IsSet(config.cap())) policy.cap = ToMillis(config.cap());
  if (config.jitter() != 0) policy.jitter = config.jitter();
  policy.max_attempts = config.max_attempts();
  if (config.has_healthy_after() && IsSet(config.healthy_after())) {
    policy.healthy_after = ToMillis(config.healthy_after());
  }
  return policy;
}

void ValidateBackoffConfig(const config::v1::Backoff& config, const std::string& path,
                           std::vector<ConfigIssue>& issues) {
  auto field = [&](const char* name) {
    return path.empty() ? std::string(name) : path + "." + name;
  };
  if (config.has_base() && IsNegative(config.base())) {
    issues.push_back({field("base"), "must not be negative"});
  }
  if (config.has_cap() && IsNegative(config.cap())) {
    issues.push_back({field("cap"), "must not be negative"});
  }
  if (config.has_healthy_after() && IsNegative(config.healthy_after())) {
    issues.push_back({field("healthy_after"), "must not be negative"});
  }
  if (config.factor() != 0 && !(config.factor() >= 1.0 && std::isfinite(config.factor()))) {
    issues.push_back({field("factor"), "must be at least 1"});
  }
  if (!(config.jitter() >= 0.0 && config.jitter() <= 1.0)) {
    issues.push_back({field("jitter"), "must be between 0 and 1"});
  }
  BackoffPolicy policy = BackoffPolicyFromConfig(config);
  if (policy.cap < policy.base && !IsNegative(config.base()) && !IsNegative(config.cap())) {
    issues.push_back({field("cap"), "must not be smaller than base (" +
                                        std::to_string(policy.base.count()) + " ms)"});
  }
}

Backoff::Backoff(BackoffPolicy policy) : Backoff(policy, RandomSeed()) {}

Backoff::Backoff(BackoffPolicy policy, std::uint64_t seed) : Backoff(policy, SeededUniform(seed)) {}

Backoff::Backoff(BackoffPolicy policy, UniformSource uniform)
    : policy_(policy), uniform_(std::move(uniform)) {}

std::chrono::milliseconds Backoff::Nominal(std::uint32_t attempt) const {
  const double base = static_cast<double>(std::max<std::int64_t>(policy_.base.count(), 0));
  const double cap = static_cast<double>(std::max<std::int64_t>(policy_.cap.count(), 0));
  const double factor = std::max(policy_.factor, 1.0);
  // Computed in doubles and clamped before converting back: factor^attempt overflows quickly.
  double delay = base * std::pow(factor, static_cast<double>(attempt));
  if (!std::isfinite(delay) || delay > cap) delay = cap;
  return std::chrono::milliseconds(static_cast<std::int64_t>(delay));
}

std::optional<std::chrono::milliseconds> Backoff::Next() {
  if (exhausted()) return std::nullopt;
  const auto nominal = Nominal(attempts_);
  if (attempts_ != UINT32_MAX) ++attempts_;
  const double jitter = std::clamp(policy_.jitter, 0.0, 1.0);
  double u = uniform_ ? uniform_() : 0.0;
  u = std::clamp(u, 0.0, 1.0);
  const double delay = static_cast<double>(nominal.count()) * (1.0 - jitter * u);
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(delay)));
}

}  // namespace tunnelkit::session
