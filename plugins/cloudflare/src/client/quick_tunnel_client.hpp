// The cloudflare backend's client (mode run): creates a quick tunnel through the API, dials the
// edge with N HA connections (each with its own index, to distinct edge addresses when there are
// enough), registers each on its control stream, serves the streams the edge opens through the
// origin proxy, and reconnects a lost connection with backoff while the others keep serving.
// Stop() is graceful: unregister every connection (the edge stops sending requests), let the
// requests in flight finish within the grace period, then close.
// Everything runs on one io_context thread, KJ included.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

#include "api/quick_tunnel_client.hpp"
#include "client/edge_link.hpp"
#include "discovery/edge_discovery.hpp"
#include "tunnelkit/origin/origin_proxy.hpp"
#include "tunnelkit/session/backoff.hpp"

namespace spdlog {
class logger;
}
namespace tunnelkit::metrics {
class Registry;
}

namespace tunnelkit::cloudflare {

// Exit statuses (README): a refusal that retrying cannot fix; reconnect attempts used up.
inline constexpr int kExitPermanent = 3;
inline constexpr int kExitAttemptsExhausted = 4;

// The spec's reconnect policy (section 8): the k-th retry waits a random time in [0, 2^k s).
session::BackoffPolicy DefaultEdgeBackoff();

struct QuickTunnelClientOptions {
  QuickTunnelApiOptions api;
  std::vector<EdgeAddress> edges;  // static edges (--edge); empty = DNS SRV discovery
  EdgeDiscoveryOptions discovery;  // used only when `edges` is empty
  EdgeDialOptions dial;
  int ha_connections = 1;
  std::chrono::milliseconds grace_period{30000};
  std::chrono::milliseconds rpc_timeout{5000};
  std::string origin_url;  // for the local configuration sent to the edge
  // Consecutive failed attempts of one connection before the process gives up (exit 4).
  int retries = 5;
  session::BackoffPolicy backoff = DefaultEdgeBackoff();
  std::string url_file;  // the public URL is written here once connection 0 is registered
  std::string tunnel_label = "cloudflare";  // the "tunnel" label of the metrics
};

class QuickTunnelClient {
 public:
  // `print` receives what a person waits for (the URL block, connection lines), one line at a
  // time; logs go to `logger`. `proxy` (and `metrics` when not null) outlive the client.
  QuickTunnelClient(boost::asio::io_context& io, QuickTunnelClientOptions options,
                    origin::OriginProxy& proxy, metrics::Registry* metrics,
                    std::shared_ptr<spdlog::logger> logger,
                    std::function<void(const std::string&)> print);
  ~QuickTunnelClient();

  // Runs until Stop() (returns 0 after a clean shutdown) or a fatal error (logs one line,
  // returns 1, kExitPermanent or kExitAttemptsExhausted).
  boost::asio::awaitable<int> Run();
  // Graceful stop. Safe to call at any time and more than once.
  void Stop();

  // For /ready and /quicktunnel.
  int ready_connections() const;
  std::string hostname() const;
  std::string connector_id() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace tunnelkit::cloudflare
