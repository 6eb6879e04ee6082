#include "tunnelkit/stream/deadline.hpp"

namespace tunnelkit {

struct Deadline::State {
  explicit State(boost::asio::any_io_executor ex) : timer(std::move(ex)) {}
  boost::asio::steady_timer timer;
  std::function<void()> action;
  bool fired = false;
  unsigned generation = 0;  // stale waits (from a previous Arm/Extend) do nothing
};

Deadline::Deadline(boost::asio::any_io_executor executor)
    : state_(std::make_shared<State>(std::move(executor))) {}

Deadline::~Deadline() {
  Cancel();
}

void Deadline::Arm(std::chrono::milliseconds after, std::function<void()> on_expire) {
  state_->action = std::move(on_expire);
  state_->fired = false;
  Extend(after);
}

void Deadline::Extend(std::chrono::milliseconds after) {
  auto& s = *state_;
  if (!s.action) return;
  unsigned generation = ++s.generation;
  s.timer.expires_after(after);
  s.timer.async_wait(
      [weak = std::weak_ptr<State>(state_), generation](boost::system::error_code ec) {
        auto state = weak.lock();
        if (!state || ec || state->generation != generation || !state->action) return;
        state->fired = true;
        auto action = std::move(state->action);
        state->action = nullptr;
        action();
      });
}

void Deadline::Cancel() {
  state_->action = nullptr;
  ++state_->generation;
  state_->timer.cancel();
}

bool Deadline::fired() const {
  return state_->fired;
}

}  // namespace tunnelkit
