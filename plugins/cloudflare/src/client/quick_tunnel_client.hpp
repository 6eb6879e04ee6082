// The cloudflare backend's client (mode run): creates a quick tunnel through the API, dials the
// edge, registers each HA connection on its control stream, prints the public URL and one line
// per registered connection, and on Stop() unregisters, waits out the grace period and closes.
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

namespace spdlog {
class logger;
}

namespace tunnelkit::cloudflare {

struct QuickTunnelClientOptions {
  QuickTunnelApiOptions api;
  std::vector<EdgeAddress> edges;  // static edges (--edge); empty = DNS SRV discovery
  EdgeDiscoveryOptions discovery;  // used only when `edges` is empty
  EdgeDialOptions dial;
  int ha_connections = 1;
  std::chrono::milliseconds grace_period{30000};
  std::chrono::milliseconds rpc_timeout{5000};
  std::string origin_url;  // for the local configuration sent to the edge
  int max_register_attempts = 3;
  std::string url_file;  // the public URL is written here once connection 0 is registered
};

class QuickTunnelClient {
 public:
  // `print` receives what a person waits for (the URL block, connection lines), one line at a
  // time; logs go to `logger`.
  QuickTunnelClient(boost::asio::io_context& io, QuickTunnelClientOptions options,
                    std::shared_ptr<spdlog::logger> logger,
                    std::function<void(const std::string&)> print);
  ~QuickTunnelClient();

  // Runs until Stop() (returns 0 after a clean shutdown) or a fatal error (logs one line,
  // returns 1).
  boost::asio::awaitable<int> Run();
  // Graceful stop: unregister, grace period, close. Safe to call at any time.
  void Stop();

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace tunnelkit::cloudflare
