#include "tunnelkit/net/server_limits.hpp"

#include <cmath>

namespace tunnelkit::net {

namespace {

void CheckPair(const ConnectionLimits& limits, const std::string& total_field,
               const std::string& per_source_field, std::vector<LimitIssue>& issues) {
  if (limits.total != 0 && limits.per_source > limits.total) {
    issues.push_back({per_source_field, std::to_string(limits.per_source) + " is more than " +
                                            total_field + " (" + std::to_string(limits.total) +
                                            ")"});
  }
}

}  // namespace

std::vector<LimitIssue> CheckServerLimits(const ServerLimits& limits, const std::string& prefix) {
  std::vector<LimitIssue> issues;
  CheckPair(limits.public_connections, prefix + "max_public_connections",
            prefix + "max_public_connections_per_source", issues);
  CheckPair(limits.unauthenticated, prefix + "max_unauthenticated",
            prefix + "max_unauthenticated_per_source", issues);
  const auto& auth = limits.auth_failures;
  if (!std::isfinite(auth.rate) || auth.rate < 0 || auth.rate > 1e6) {
    issues.push_back({prefix + "auth_failure_rate", "must be 0..1000000 per second"});
  }
  if (!std::isfinite(auth.burst) || auth.burst < 0 || auth.burst > 1e6) {
    issues.push_back({prefix + "auth_failure_burst", "must be 0..1000000"});
  } else if (auth.burst > 0 && auth.burst < 1) {
    issues.push_back({prefix + "auth_failure_burst", "must be 0 (no limit) or at least 1"});
  }
  if (auth.burst >= 1 && auth.rate == 0) {
    issues.push_back({prefix + "auth_failure_rate",
                      "0 would lock a source out for good after its burst (use "
                      "auth_failure_burst 0 to turn the limit off)"});
  }
  return issues;
}

}  // namespace tunnelkit::net
