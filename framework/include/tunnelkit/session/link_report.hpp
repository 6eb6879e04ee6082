// Publishing a supervised link's state: Prometheus series and the admin JSON view.
#pragma once

#include <string>

#include "tunnelkit/session/supervisor.hpp"

namespace tunnelkit::metrics {
class Registry;
}

namespace tunnelkit::session {

// Registers an observer on `supervisor` that keeps these series up to date, labelled
// {tunnel, link}:
//   tunnelkit_link_up                 gauge   1 while connected, else 0
//   tunnelkit_link_connects_total     counter sessions that reached MarkConnected
//   tunnelkit_link_reconnects_total   counter attempts after the first one
//   tunnelkit_link_failures_total     counter sessions that ended with a transient failure
// The registry must outlive the supervisor.
void ExportLinkMetrics(Supervisor& supervisor, metrics::Registry& registry,
                       const std::string& tunnel, const std::string& link);

// One JSON object for the admin /tunnels view:
// {"name":"ferro client","state":"connected","attempts":3,"reconnects":2,
//  "lastError":"connect: Connection refused","detail":"127.0.0.1:7835","connectedForMs":1520}
std::string LinkStatusJson(const LinkStatus& status);

}  // namespace tunnelkit::session
