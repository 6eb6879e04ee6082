// What a running backend gets from the host: configuration, event loop, logging, metrics,
// the admin endpoint, and the stop signal. One Runtime per tunnel (one per tunnelctl process).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "tunnelkit/admin/admin_server.hpp"
#include "tunnelkit/config/v1/tunnel.pb.h"

namespace spdlog {
class logger;
}

namespace tunnelkit {
namespace metrics {
class Registry;
}

class Runtime {
 public:
  // The usual constructor: the logger is logging::MakeLogger(config.id()) (configure logging
  // first), and the Runtime owns its metrics registry.
  explicit Runtime(config::v1::Tunnel config);
  // Tests and tools: a given logger (null: logging::MakeLogger(config.id())) and registry
  // (null: the Runtime owns one). A given registry must outlive the Runtime.
  Runtime(config::v1::Tunnel config, std::shared_ptr<spdlog::logger> logger,
          metrics::Registry* metrics = nullptr);
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  boost::asio::io_context& io() { return io_; }
  const config::v1::Tunnel& config() const { return config_; }
  // The tunnel's logger; its name is the tunnel id.
  const std::shared_ptr<spdlog::logger>& logger() const { return logger_; }
  // A logger for a sub-part of this tunnel ("<tunnel id>/<part>"), same sinks and level.
  std::shared_ptr<spdlog::logger> MakeLogger(const std::string& part) const;
  // The metrics registry (never null). Served on /metrics when config().metrics() is set.
  metrics::Registry& metrics() { return *metrics_; }
  // config().grace_period(), or 30s when unset.
  std::chrono::nanoseconds grace_period() const;

  // --- admin endpoint -------------------------------------------------------------------
  // Starts the admin server when config().metrics() is set (tunnelctl calls it before
  // Backend::Run) and logs "admin listening on HOST:PORT" with the bound port. Returns an
  // empty string on success or when no address is configured, else a one-line reason.
  std::string StartAdmin();
  // The running admin server, or null.
  admin::AdminServer* admin() { return admin_.get(); }
  // Extra GET routes returning JSON (e.g. cloudflare's /quicktunnel). May be called before or
  // after StartAdmin. Handlers run on io().
  void AddAdminRoute(const std::string& path, admin::JsonHandler handler);
  // What /ready reports (runs on io()). Without it /ready answers 503.
  void SetReadiness(std::function<admin::Readiness()> readiness);
  // The tunnel's state in /tunnels ("starting" until set): e.g. "connecting", "connected",
  // "reconnecting", "serving", "stopping". Thread-safe.
  void SetState(std::string state);
  std::string state() const;
  // A JSON object added as "details" to this tunnel's entry in /tunnels (runs on io()).
  void SetDetails(admin::JsonHandler details_json_object);
  // The /tunnels body: [{"id":..,"backend":..,"mode":..,"state":..,"details":{..}}]
  std::string TunnelsJson() const;

  // --- stopping -------------------------------------------------------------------------
  // Handlers run on io() when SIGINT or SIGTERM arrives (first signal: graceful; the second
  // ends the process at once).
  void OnStop(std::function<void()> handler);
  // Installs the signal handling; tunnelctl calls it before Backend::Run. The watch for a
  // second signal keeps io() busy during draining: when the backend has drained, it returns
  // from Run (calling io().stop() if it ran the loop until then).
  void WatchSignals();
  bool stopping() const { return stopping_; }
  // Triggers the stop handlers as a signal would (tests, fatal errors). Also closes the admin
  // server, so that io().run() can return once the backend's own work is done.
  void RequestStop();

 private:
  // Run by one thread (the backend's Run): with that hint, handlers the loop posts to itself go
  // on a thread-private queue instead of through the scheduler's mutex. Other threads may
  // still post to it (zlayer's libwebsockets threads do).
  boost::asio::io_context io_{1};
  config::v1::Tunnel config_;
  std::shared_ptr<spdlog::logger> logger_;
  std::unique_ptr<metrics::Registry> owned_metrics_;
  metrics::Registry* metrics_;
  std::unique_ptr<admin::AdminServer> admin_;
  std::vector<std::pair<std::string, admin::JsonHandler>> admin_routes_;
  std::function<admin::Readiness()> readiness_;
  admin::JsonHandler details_;
  mutable std::mutex state_mutex_;
  std::string state_ = "starting";
  std::vector<std::function<void()>> stop_handlers_;
  bool stopping_ = false;
  struct Signals;
  std::unique_ptr<Signals> signals_;
};

}  // namespace tunnelkit
