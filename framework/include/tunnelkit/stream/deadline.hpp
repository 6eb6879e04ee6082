// Deadline: a timer that runs an action (typically closing a socket or resetting a stream) when
// it expires. Boost.Asio 1.74 has no per-operation cancellation, so timeouts are enforced by
// making the pending operation fail. Destroying or cancelling the Deadline disarms it.
#pragma once

#include <chrono>
#include <functional>
#include <memory>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>

namespace tunnelkit {

class Deadline {
 public:
  explicit Deadline(boost::asio::any_io_executor executor);
  ~Deadline();
  Deadline(const Deadline&) = delete;
  Deadline& operator=(const Deadline&) = delete;

  // Arms (or re-arms) the deadline: `on_expire` runs once, on the executor, after `after`.
  void Arm(std::chrono::milliseconds after, std::function<void()> on_expire);
  // Pushes the expiry out to now + `after`, keeping the action.
  void Extend(std::chrono::milliseconds after);
  void Cancel();
  // True once the action ran.
  bool fired() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace tunnelkit
