// LivenessMonitor (a.k.a. heartbeat): sends a ping every ping_interval through a function the
// backend supplies (any protocol's ping frame: ferro Heartbeat, WebSocket ping, capnp ping...)
// and declares the peer dead when nothing arrived from it for `timeout`. The backend calls
// OnPeerActivity() for every frame it receives (cheap: stores a timestamp, no timer work) and
// closes the session from the dead callback.
//
// Threading: one executor thread. Callbacks run on it, never after Stop() or destruction, and
// the dead callback may destroy the monitor.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>

#include <boost/asio/any_io_executor.hpp>

namespace tunnelkit::session {

class LivenessMonitor {
 public:
  struct Options {
    // Time between pings; 0 = never ping (passive: the peer pings, we only watch).
    std::chrono::milliseconds ping_interval{5000};
    // Silence after which the peer counts as dead; 0 = never (pings only).
    std::chrono::milliseconds timeout{15000};
  };

  LivenessMonitor(boost::asio::any_io_executor executor, Options options,
                  std::function<void()> send_ping, std::function<void()> on_dead);
  ~LivenessMonitor();  // Stop()
  LivenessMonitor(const LivenessMonitor&) = delete;
  LivenessMonitor& operator=(const LivenessMonitor&) = delete;

  // Starts pinging and watching; the silence clock starts now. Once only.
  void Start();
  // Something (any frame, a pong) arrived from the peer.
  void OnPeerActivity();
  // No more pings or dead callback. Idempotent.
  void Stop();

  bool running() const;
  bool dead() const;  // the dead callback fired
  std::uint64_t pings_sent() const;
  // Time since the last peer activity (or since Start()).
  std::chrono::steady_clock::duration silence() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

// The same thing under the name most protocols use.
using Heartbeat = LivenessMonitor;

}  // namespace tunnelkit::session
