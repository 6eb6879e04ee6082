// Backoff: the reconnect delay policy of the supervisor — exponential growth with a cap,
// randomised by jitter so that many clients cut off at once do not reconnect in lockstep.
//
// Delay of retry n (n = 0 for the first retry after a failure):
//   nominal(n) = min(cap, base * factor^n)
//   delay(n)   = nominal(n) * (1 - jitter * u),  u uniform in [0, 1)
// so every delay lies in [nominal * (1 - jitter), nominal] (rounded to whole milliseconds)
// and never exceeds cap.
// max_attempts bounds the number of consecutive retries (0 = forever); once they are used up,
// Next() reports exhaustion until Reset().
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace tunnelkit {
struct ConfigIssue;
namespace config::v1 {
class Backoff;
}
}  // namespace tunnelkit

namespace tunnelkit::session {

struct BackoffPolicy {
  std::chrono::milliseconds base{1000};
  double factor = 2.0;
  std::chrono::milliseconds cap{60000};
  double jitter = 0.3;             // 0..1: share of the delay that is randomised
  std::uint32_t max_attempts = 0;  // consecutive retries before giving up; 0 = forever
  // A session that stayed connected at least this long resets the backoff (Supervisor).
  std::chrono::milliseconds healthy_after{30000};
};

// Maps the config message onto a policy. Unset fields (absent Durations, 0 for factor and
// jitter) take the defaults above; proto3 cannot tell jitter 0 from unset, so a configured
// jitter of exactly 0 means the default. Call ValidateBackoffConfig first: this function does
// not check ranges.
BackoffPolicy BackoffPolicyFromConfig(const config::v1::Backoff& config);

// Appends one issue per invalid field, naming it as "<path>.<field>" (path e.g. "reconnect"):
// negative or zero durations, factor < 1, jitter outside [0, 1], cap < base.
void ValidateBackoffConfig(const config::v1::Backoff& config, const std::string& path,
                           std::vector<ConfigIssue>& issues);

class Backoff {
 public:
  // Uniform random numbers in [0, 1), used for jitter.
  using UniformSource = std::function<double()>;

  // Seeded from std::random_device.
  explicit Backoff(BackoffPolicy policy = {});
  // Deterministic: the same seed yields the same sequence of delays.
  Backoff(BackoffPolicy policy, std::uint64_t seed);
  // Jitter drawn from `uniform` (tests: a constant or a scripted sequence).
  Backoff(BackoffPolicy policy, UniformSource uniform);

  // The delay before the next retry, or nullopt once max_attempts retries were handed out
  // since the last Reset().
  std::optional<std::chrono::milliseconds> Next();
  // Nominal (un-jittered) delay of retry `attempt` (0-based), capped.
  std::chrono::milliseconds Nominal(std::uint32_t attempt) const;
  // Back to the first delay and a full budget of attempts.
  void Reset() { attempts_ = 0; }

  // Retries handed out since the last Reset().
  std::uint32_t attempts() const { return attempts_; }
  bool exhausted() const { return policy_.max_attempts != 0 && attempts_ >= policy_.max_attempts; }
  const BackoffPolicy& policy() const { return policy_; }

 private:
  BackoffPolicy policy_;
  UniformSource uniform_;
  std::uint32_t attempts_ = 0;
};

}  // namespace tunnelkit::session
