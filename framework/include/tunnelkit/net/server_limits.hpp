// What anonymous clients may hold of a server that faces the internet (issue 14,
// docs/reliability.md): public connections, connections that have not authenticated yet, and
// how fast one source may fail authentication. Shared by the ferro and zlayer servers, which
// carry the same configuration fields (max_public_connections, ..., auth_failure_burst).
#pragma once

#include <string>
#include <vector>

#include "tunnelkit/net/connection_limiter.hpp"
#include "tunnelkit/net/source_rate_limiter.hpp"

namespace tunnelkit::net {

struct ServerLimits {
  // Public connections (a server's ingress or public ports), overall and per source.
  ConnectionLimits public_connections{10000, 1000};
  // Connections before authentication (TLS, upgrade, handshake), overall and per source.
  ConnectionLimits unauthenticated{256, 16};
  // Authentication failures per source: burst, then rate per second.
  SourceRateLimits auth_failures{1.0, 10, 4096};
};

struct LimitIssue {
  std::string field;  // "<prefix>max_public_connections_per_source"
  std::string reason;
};

// Contradictions and out-of-range values, each naming its field with `prefix` ("ferro.").
std::vector<LimitIssue> CheckServerLimits(const ServerLimits& limits, const std::string& prefix);

// The limits a backend's configuration message sets (optional fields named as above); unset
// fields keep the defaults.
template <class Config>
ServerLimits ServerLimitsFrom(const Config& c) {
  ServerLimits limits;
  if (c.has_max_public_connections()) limits.public_connections.total = c.max_public_connections();
  if (c.has_max_public_connections_per_source()) {
    limits.public_connections.per_source = c.max_public_connections_per_source();
  }
  if (c.has_max_unauthenticated()) limits.unauthenticated.total = c.max_unauthenticated();
  if (c.has_max_unauthenticated_per_source()) {
    limits.unauthenticated.per_source = c.max_unauthenticated_per_source();
  }
  if (c.has_auth_failure_rate()) limits.auth_failures.rate = c.auth_failure_rate();
  if (c.has_auth_failure_burst()) limits.auth_failures.burst = c.auth_failure_burst();
  return limits;
}

}  // namespace tunnelkit::net
