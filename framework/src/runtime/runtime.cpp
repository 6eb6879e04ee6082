#include "tunnelkit/runtime.hpp"

#include <csignal>
#include <cstdlib>

#include <boost/asio/signal_set.hpp>
#include <spdlog/spdlog.h>

namespace tunnelkit {

struct Runtime::Signals {
  explicit Signals(boost::asio::io_context& io) : set(io, SIGINT, SIGTERM) {}
  boost::asio::signal_set set;
};

Runtime::Runtime(config::v1::Tunnel config, std::shared_ptr<spdlog::logger> logger,
                 metrics::Registry* metrics)
    : config_(std::move(config)), logger_(std::move(logger)), metrics_(metrics) {}

Runtime::~Runtime() = default;

std::shared_ptr<spdlog::logger> Runtime::MakeLogger(const std::string& part) const {
  auto child = logger_->clone(logger_->name() + "/" + part);
  return child;
}

void Runtime::OnStop(std::function<void()> handler) { stop_handlers_.push_back(std::move(handler)); }

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
  auto handlers = std::move(stop_handlers_);
  for (auto& handler : handlers) handler();
}

}  // namespace tunnelkit
