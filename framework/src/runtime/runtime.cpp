#include "tunnelkit/runtime.hpp"

#include <csignal>
#include <cstdlib>

#include <spdlog/spdlog.h>
#include <boost/asio/signal_set.hpp>

#include "tunnelkit/config/duration.hpp"
#include "tunnelkit/logging.hpp"
#include "tunnelkit/metrics/registry.hpp"

namespace tunnelkit {

struct Runtime::Signals {
  explicit Signals(boost::asio::io_context& io) : set(io, SIGINT, SIGTERM) {}
  boost::asio::signal_set set;
};

Runtime::Runtime(config::v1::Tunnel config) : Runtime(std::move(config), nullptr, nullptr) {}

Runtime::Runtime(config::v1::Tunnel config, std::shared_ptr<spdlog::logger> logger,
                 metrics::Registry* metrics)
    : config_(std::move(config)), logger_(std::move(logger)), metrics_(metrics) {
  if (!logger_) logger_ = logging::MakeLogger(config_.id().empty() ? "tunnel" : config_.id());
  if (!metrics_) {
    owned_metrics_ = std::make_unique<metrics::Registry>();
    metrics_ = owned_metrics_.get();
  }
  metrics_
      ->AddGauge("tunnelkit_build_info", "tunnelkit version and backend of this process",
                 {"version", "backend"})
      .With({TUNNELKIT_VERSION_STRING, config_.backend()})
      .Set(1);
}

Runtime::~Runtime() {
  // The admin server's connections refer to the registry and handlers; close them first.
  if (admin_) admin_->Stop();
  admin_.reset();
}

std::shared_ptr<spdlog::logger> Runtime::MakeLogger(const std::string& part) const {
  return logger_->clone(logger_->name() + "/" + part);
}

std::chrono::nanoseconds Runtime::grace_period() const {
  using namespace std::chrono_literals;
  return config::DurationOr(config_.has_grace_period(), config_.grace_period(), 30s);
}

std::string Runtime::StartAdmin() {
  if (config_.metrics().empty() || admin_) return {};
  auto server = std::make_unique<admin::AdminServer>(io_, *metrics_, MakeLogger("admin"));
  for (const auto& [path, handler] : admin_routes_) server->AddJsonRoute(path, handler);
  server->SetReadiness([this] { return readiness_ ? readiness_() : admin::Readiness{}; });
  server->SetTunnels([this] { return TunnelsJson(); });
  if (auto error = server->Listen(config_.metrics()); !error.empty()) return error;
  const auto endpoint = server->endpoint();
  const auto address = endpoint.address().is_v6() ? "[" + endpoint.address().to_string() + "]"
                                                  : endpoint.address().to_string();
  logger_->info("admin listening on {}:{}", address, endpoint.port());
  admin_ = std::move(server);
  return {};
}

void Runtime::AddAdminRoute(const std::string& path, admin::JsonHandler handler) {
  admin_routes_.emplace_back(path, handler);
  if (admin_) admin_->AddJsonRoute(path, std::move(handler));
}

void Runtime::SetReadiness(std::function<admin::Readiness()> readiness) {
  readiness_ = std::move(readiness);
}

void Runtime::SetState(std::string state) {
  std::lock_guard lock(state_mutex_);
  state_ = std::move(state);
}

std::string Runtime::state() const {
  std::lock_guard lock(state_mutex_);
  return state_;
}

void Runtime::SetDetails(admin::JsonHandler details_json_object) {
  details_ = std::move(details_json_object);
}

std::string Runtime::TunnelsJson() const {
  std::string out = "[{\"id\":" + logging::JsonString(config_.id()) +
                    ",\"backend\":" + logging::JsonString(config_.backend()) +
                    ",\"mode\":" + logging::JsonString(config_.mode()) +
                    ",\"state\":" + logging::JsonString(state());
  if (details_) {
    std::string details = details_();
    if (!details.empty()) out += ",\"details\":" + details;
  }
  out += "}]";
  return out;
}

void Runtime::OnStop(std::function<void()> handler) {
  stop_handlers_.push_back(std::move(handler));
}

void Runtime::WatchSignals() {
  signals_ = std::make_unique<Signals>(io_);
  signals_->set.async_wait([this](const boost::system::error_code& ec, int signal) {
    if (ec) return;
    logger_->info("received {}, shutting down (again to exit at once)",
                  signal == SIGINT ? "SIGINT" : "SIGTERM");
    RequestStop();
    signals_->set.async_wait([this](const boost::system::error_code& ec2, int) {
      if (ec2) return;
      logger_->warn("second signal: exiting without draining");
      std::_Exit(130);
    });
  });
}

void Runtime::RequestStop() {
  if (stopping_) return;
  stopping_ = true;
  SetState("stopping");
  auto handlers = std::move(stop_handlers_);
  for (auto& handler : handlers) handler();
  if (admin_) admin_->Stop();
}

}  // namespace tunnelkit
