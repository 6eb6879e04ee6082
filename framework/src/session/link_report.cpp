#include "tunnelkit/session/link_report.hpp"

#include <nlohmann/json.hpp>

#include "tunnelkit/metrics/registry.hpp"

namespace tunnelkit::session {

void ExportLinkMetrics(Supervisor& supervisor, metrics::Registry& registry,
                       const std::string& tunnel, const std::string& link) {
  const std::vector<std::string> labels{tunnel, link};
  metrics::Gauge up =
      registry.AddGauge("tunnelkit_link_up", "1 while the link is connected", {"tunnel", "link"})
          .With(labels);
  metrics::Counter connects = registry
                                  .AddCounter("tunnelkit_link_connects_total",
                                              "Sessions that got connected", {"tunnel", "link"})
                                  .With(labels);
  metrics::Counter reconnects =
      registry
          .AddCounter("tunnelkit_link_reconnects_total", "Connection attempts after the first",
                      {"tunnel", "link"})
          .With(labels);
  metrics::Counter failures =
      registry
          .AddCounter("tunnelkit_link_failures_total",
                      "Sessions that ended with a transient failure", {"tunnel", "link"})
          .With(labels);
  up.Set(0);
  supervisor.AddObserver([=](const LinkStateChange& change) {
    switch (change.state) {
      case LinkState::kConnecting:
        if (change.attempt > 1) reconnects.Inc();
        up.Set(0);
        break;
      case LinkState::kConnected:
        connects.Inc();
        up.Set(1);
        break;
      case LinkState::kDisconnected:
        failures.Inc();
        up.Set(0);
        break;
      default:
        up.Set(0);
        break;
    }
  });
}

std::string LinkStatusJson(const LinkStatus& status) {
  nlohmann::json json{
      {"name", status.name},
      {"state", LinkStateName(status.state)},
      {"attempts", status.attempts},
      {"reconnects", status.reconnects},
      {"lastError", status.last_reason},
      {"detail", status.detail},
      {"connectedForMs", status.connected_for.count()},
  };
  // Invalid UTF-8 in a reason (it may quote the network) must not throw.
  return json.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace tunnelkit::session
