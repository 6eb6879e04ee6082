#include "tunnelkit/session/supervisor.hpp"

#include <exception>
#include <utility>

#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace tunnelkit::session {

const char* LinkStateName(LinkState state) {
  switch (state) {
    case LinkState::kIdle:
      return "idle";
    case LinkState::kConnecting:
      return "connecting";
    case LinkState::kConnected:
      return "connected";
    case LinkState::kDisconnected:
      return "disconnected";
    case LinkState::kStopped:
      return "stopped";
    case LinkState::kFailed:
      return "failed";
  }
  return "unknown";
}

const char* SupervisorEndName(SupervisorEnd end) {
  switch (end) {
    case SupervisorEnd::kStopped:
      return "stopped";
    case SupervisorEnd::kPermanentFailure:
      return "permanent failure";
    case SupervisorEnd::kAttemptsExhausted:
      return "reconnect attempts exhausted";
  }
  return "unknown";
}

std::string SupervisorResult::Describe() const {
  std::string text = SupervisorEndName(kind);
  if (!reason.empty()) text += ": " + reason;
  text += " (after " + std::to_string(attempts) + (attempts == 1 ? " attempt)" : " attempts)");
  return text;
}

int ExitStatusFor(const SupervisorResult& result) {
  switch (result.kind) {
    case SupervisorEnd::kStopped:
      return 0;
    case SupervisorEnd::kPermanentFailure:
      return kExitPermanentFailure;
    case SupervisorEnd::kAttemptsExhausted:
      return kExitAttemptsExhausted;
  }
  return 1;
}

// --- SessionControl ---

void SessionControl::MarkConnected(std::string detail) {
  if (connected_at_) return;
  connected_at_ = std::chrono::steady_clock::now();
  detail_ = detail;
  owner_.logger_->info("{}: connected{}{}", owner_.options_.name, detail.empty() ? "" : " ",
                       detail);
  owner_.SetState(LinkState::kConnected, std::move(detail));
}

bool SessionControl::stop_requested() const {
  return stop_requested_ || owner_.stopping_;
}

void SessionControl::OnStop(std::function<void()> handler) {
  if (stop_requested()) {
    handler();
    return;
  }
  stop_handlers_.push_back(std::move(handler));
}

const std::shared_ptr<spdlog::logger>& SessionControl::logger() const {
  return owner_.logger_;
}

void SessionControl::RequestStop() {
  if (stop_requested_) return;
  stop_requested_ = true;
  // Handlers may register further handlers or end the session: run a detached copy.
  auto handlers = std::move(stop_handlers_);
  stop_handlers_.clear();
  for (auto& handler : handlers) handler();
}

// --- Supervisor ---

namespace {
Backoff MakeBackoff(const Supervisor::Options& options) {
  if (options.seed) return Backoff(options.backoff, *options.seed);
  return Backoff(options.backoff);
}
}  // namespace

Supervisor::Supervisor(boost::asio::any_io_executor executor, Options options,
                       ConnectAndServe connect_and_serve)
    : executor_(executor),
      options_(std::move(options)),
      connect_and_serve_(std::move(connect_and_serve)),
      logger_(options_.logger ? options_.logger : spdlog::default_logger()),
      backoff_(MakeBackoff(options_)),
      retry_timer_(executor) {}

Supervisor::~Supervisor() = default;

void Supervisor::AddObserver(Observer observer) {
  observers_.push_back(std::move(observer));
}

void Supervisor::SetState(LinkState state, std::string reason, std::chrono::milliseconds retry_in) {
  state_ = state;
  LinkStateChange change{state, attempts_, std::move(reason), retry_in};
  for (auto& observer : observers_) observer(change);
}

LinkStatus Supervisor::Status() const {
  LinkStatus status;
  status.name = options_.name;
  status.state = state_;
  status.attempts = attempts_;
  status.reconnects = reconnects_;
  status.last_reason = last_reason_;
  if (state_ == LinkState::kConnected && current_ != nullptr && current_->connected_at_) {
    status.detail = current_->detail_;
    status.connected_for = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - *current_->connected_at_);
  }
  return status;
}

void Supervisor::Stop() {
  if (stopping_) return;
  stopping_ = true;
  logger_->debug("{}: stop requested", options_.name);
  retry_timer_.cancel();
  if (current_ != nullptr) current_->RequestStop();
}

SupervisorResult Supervisor::Finish(SupervisorEnd kind, std::string reason) {
  SupervisorResult result{kind, std::move(reason), attempts_, reconnects_};
  if (kind == SupervisorEnd::kStopped) {
    logger_->info("{}: stopped", options_.name);
    SetState(LinkState::kStopped, result.reason);
  } else {
    logger_->error("{}: {}", options_.name, result.Describe());
    SetState(LinkState::kFailed, result.reason);
  }
  return result;
}

boost::asio::awaitable<SupervisorResult> Supervisor::Run() {
  if (started_) throw std::logic_error("Supervisor::Run called twice");
  started_ = true;
  const auto& policy = options_.backoff;

  for (;;) {
    if (stopping_) co_return Finish(SupervisorEnd::kStopped, {});

    ++attempts_;
    if (attempts_ > 1) ++reconnects_;
    SessionControl control(*this, attempts_, backoff_.attempts());
    current_ = &control;
    logger_->debug("{}: connecting (attempt {})", options_.name, attempts_);
    SetState(LinkState::kConnecting, {});

    SessionOutcome outcome;
    try {
      outcome = co_await connect_and_serve_(control);
    } catch (const std::exception& e) {
      outcome = SessionOutcome::Transient(std::string("unexpected error: ") + e.what());
    }
    current_ = nullptr;
    if (!outcome.reason.empty()) last_reason_ = outcome.reason;

    if (stopping_ || outcome.kind == SessionEndKind::kStopped) {
      co_return Finish(SupervisorEnd::kStopped, stopping_ ? std::string() : outcome.reason);
    }
    if (outcome.kind == SessionEndKind::kPermanent) {
      co_return Finish(SupervisorEnd::kPermanentFailure, outcome.reason);
    }

    // Transient: a session that served long enough earns a fresh backoff.
    if (control.connected_at_) {
      const auto up = std::chrono::steady_clock::now() - *control.connected_at_;
      if (up >= policy.healthy_after) backoff_.Reset();
    }
    const std::string reason = outcome.reason.empty() ? "session ended" : outcome.reason;
    const auto delay = backoff_.Next();
    if (!delay) {
      co_return Finish(SupervisorEnd::kAttemptsExhausted, "gave up after " +
                                                              std::to_string(policy.max_attempts) +
                                                              " retries; last error: " + reason);
    }
    if (policy.max_attempts != 0) {
      logger_->warn("{}: {}; reconnecting in {} ms (retry {}/{})", options_.name, reason,
                    delay->count(), backoff_.attempts(), policy.max_attempts);
    } else {
      logger_->warn("{}: {}; reconnecting in {} ms (retry {})", options_.name, reason,
                    delay->count(), backoff_.attempts());
    }
    SetState(LinkState::kDisconnected, reason, *delay);

    boost::system::error_code ec;
    retry_timer_.expires_after(*delay);
    co_await retry_timer_.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
  }
}

void Supervisor::Start(std::function<void(SupervisorResult)> on_done) {
  boost::asio::co_spawn(
      executor_, Run(),
      [on_done = std::move(on_done)](std::exception_ptr error, SupervisorResult result) {
        if (error) std::rethrow_exception(error);
        if (on_done) on_done(std::move(result));
      });
}

}  // namespace tunnelkit::session
