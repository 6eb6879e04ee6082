#include "tunnelkit/session/liveness.hpp"

#include <boost/asio/steady_timer.hpp>

namespace tunnelkit::session {

// Timer handlers hold a shared_ptr to the state, so the monitor object may go away (even from
// inside a callback) while handlers are still queued; `running` tells them to do nothing.
struct LivenessMonitor::State : std::enable_shared_from_this<State> {
  State(boost::asio::any_io_executor executor, Options opts, std::function<void()> ping,
        std::function<void()> dead)
      : options(opts),
        send_ping(std::move(ping)),
        on_dead(std::move(dead)),
        ping_timer(executor),
        deadline_timer(executor) {}

  void ArmPing() {
    ping_timer.expires_after(options.ping_interval);
    ping_timer.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (ec || !self->running) return;
      ++self->pings_sent;
      if (self->send_ping) self->send_ping();
      if (self->running) self->ArmPing();
    });
  }

  // The deadline timer is only re-armed when it fires, to the last activity plus timeout:
  // activity itself never touches a timer.
  void ArmDeadline(std::chrono::steady_clock::time_point at) {
    deadline_timer.expires_at(at);
    deadline_timer.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (ec || !self->running) return;
      const auto deadline = self->last_activity + self->options.timeout;
      if (std::chrono::steady_clock::now() < deadline) {
        self->ArmDeadline(deadline);
        return;
      }
      self->dead = true;
      self->Stop();
      if (self->on_dead) {
        auto callback = std::move(self->on_dead);
        callback();
      }
    });
  }

  void Stop() {
    running = false;
    ping_timer.cancel();
    deadline_timer.cancel();
  }

  Options options;
  std::function<void()> send_ping;
  std::function<void()> on_dead;
  boost::asio::steady_timer ping_timer;
  boost::asio::steady_timer deadline_timer;
  std::chrono::steady_clock::time_point last_activity = std::chrono::steady_clock::now();
  std::uint64_t pings_sent = 0;
  bool running = false;
  bool started = false;
  bool dead = false;
};

LivenessMonitor::LivenessMonitor(boost::asio::any_io_executor executor, Options options,
                                 std::function<void()> send_ping, std::function<void()> on_dead)
    : state_(std::make_shared<State>(executor, options, std::move(send_ping), std::move(on_dead))) {
}

LivenessMonitor::~LivenessMonitor() {
  Stop();
}

void LivenessMonitor::Start() {
  if (state_->started) return;
  state_->started = true;
  state_->running = true;
  state_->last_activity = std::chrono::steady_clock::now();
  if (state_->options.ping_interval.count() > 0) state_->ArmPing();
  if (state_->options.timeout.count() > 0) {
    state_->ArmDeadline(state_->last_activity + state_->options.timeout);
  }
}

void LivenessMonitor::OnPeerActivity() {
  state_->last_activity = std::chrono::steady_clock::now();
}

void LivenessMonitor::Stop() {
  state_->Stop();
}

bool LivenessMonitor::running() const {
  return state_->running;
}
bool LivenessMonitor::dead() const {
  return state_->dead;
}
std::uint64_t LivenessMonitor::pings_sent() const {
  return state_->pings_sent;
}

std::chrono::steady_clock::duration LivenessMonitor::silence() const {
  return std::chrono::steady_clock::now() - state_->last_activity;
}

}  // namespace tunnelkit::session
