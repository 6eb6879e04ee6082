// What a running backend gets from the host: configuration, event loop, logging, metrics,
// and the stop signal. One Runtime per tunnelctl process.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>

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
  Runtime(config::v1::Tunnel config, std::shared_ptr<spdlog::logger> logger,
          metrics::Registry* metrics);
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  boost::asio::io_context& io() { return io_; }
  const config::v1::Tunnel& config() const { return config_; }
  // The tunnel's logger; its name is the tunnel id.
  const std::shared_ptr<spdlog::logger>& logger() const { return logger_; }
  // A logger for a sub-part of this tunnel ("<tunnel id>/<part>").
  std::shared_ptr<spdlog::logger> MakeLogger(const std::string& part) const;
  // The process-wide metrics registry (never null while the backend runs).
  metrics::Registry& metrics() { return *metrics_; }

  // Handlers run on io() when SIGINT or SIGTERM arrives (first signal: graceful; the second
  // ends the process at once).
  void OnStop(std::function<void()> handler);
  // Installs the signal handling; tunnelctl calls it before Backend::Run.
  void WatchSignals();
  bool stopping() const { return stopping_; }
  // Triggers the stop handlers as a signal would (tests, fatal errors).
  void RequestStop();

 private:
  boost::asio::io_context io_;
  config::v1::Tunnel config_;
  std::shared_ptr<spdlog::logger> logger_;
  metrics::Registry* metrics_;
  std::vector<std::function<void()>> stop_handlers_;
  bool stopping_ = false;
  struct Signals;
  std::unique_ptr<Signals> signals_;
};

}  // namespace tunnelkit
