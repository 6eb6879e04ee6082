// Supervisor: keeps one logical link alive (ferro client -> server, one cloudflare edge
// connection, one zlayer agent link). The backend supplies a "connect and serve" coroutine that
// runs one session from connect to end and says how it ended; the supervisor runs it in a loop,
// waits out the backoff between attempts, resets the backoff after a healthy session, and ends
// with a typed result when told to stop, when the backend reports a permanent failure (never
// retried), or when the retry budget is used up.
//
// Threading: a Supervisor lives on one executor (one io_context thread). Run/Start, Stop and the
// accessors must be called on that thread; observers and OnStop handlers run on it. The
// Supervisor must outlive Run().
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include "tunnelkit/session/backoff.hpp"

namespace spdlog {
class logger;
}

namespace tunnelkit::session {

// How one session ended, as reported by the backend's connect-and-serve coroutine.
enum class SessionEndKind {
  kStopped,    // clean end: asked to stop, or the peer ended the link for good (no retry)
  kTransient,  // connect failed, connection lost, heartbeat timeout...: retry after backoff
  kPermanent,  // "token rejected", "tunnel id taken", protocol version refused: never retried
};

struct SessionOutcome {
  SessionEndKind kind = SessionEndKind::kStopped;
  std::string reason;

  static SessionOutcome Stopped(std::string reason = {}) {
    return {SessionEndKind::kStopped, std::move(reason)};
  }
  static SessionOutcome Transient(std::string reason) {
    return {SessionEndKind::kTransient, std::move(reason)};
  }
  static SessionOutcome Permanent(std::string reason) {
    return {SessionEndKind::kPermanent, std::move(reason)};
  }
};

// The link's state, for logs, the admin JSON and metrics gauges.
enum class LinkState {
  kIdle,          // not started
  kConnecting,    // an attempt is running but has not called MarkConnected yet
  kConnected,     // MarkConnected was called; the session is serving
  kDisconnected,  // the last session ended with a transient failure; waiting to retry
  kStopped,       // ended cleanly (Stop() or a clean session end)
  kFailed,        // ended with a permanent failure or the retry budget was used up
};
// "idle", "connecting", "connected", "disconnected", "stopped", "failed".
const char* LinkStateName(LinkState state);

struct LinkStateChange {
  LinkState state = LinkState::kIdle;
  std::uint32_t attempt = 0;  // 1-based number of the connection attempt this concerns
  // connected: the backend's detail (e.g. "edge lhr01"); disconnected/failed/stopped: why.
  std::string reason;
  std::chrono::milliseconds retry_in{0};  // disconnected: delay before the next attempt
};

// A point-in-time view of one supervised link, for the admin JSON.
struct LinkStatus {
  std::string name;
  LinkState state = LinkState::kIdle;
  std::uint32_t attempts = 0;
  std::uint64_t reconnects = 0;
  std::string last_reason;  // reason of the last session end (empty if none yet)
  std::string detail;       // what the current session passed to MarkConnected
  // How long the current session has been connected (zero unless state is kConnected).
  std::chrono::milliseconds connected_for{0};
};

class Supervisor;

// Handed to each run of the connect-and-serve coroutine; valid until that run returns.
class SessionControl {
 public:
  // The session is established (connected and authenticated/registered). Starts the clock
  // for healthy_after and moves the link state to kConnected. Call at most once per attempt.
  void MarkConnected(std::string detail = {});
  bool connected() const { return connected_at_.has_value(); }

  // True once the supervisor was asked to stop.
  bool stop_requested() const;
  // Registers how to end this session promptly (close the socket, cancel timers). Runs once,
  // on the executor, when Stop() is called; runs at once if stop was already requested.
  // The session should then return (any outcome is read as a stop).
  void OnStop(std::function<void()> handler);

  // 1-based attempt number since the supervisor started.
  std::uint32_t attempt() const { return attempt_; }
  // Retries taken from the backoff since its last reset when this attempt began (0 for the
  // first attempt and right after a healthy session). Cloudflare sends it as
  // numPreviousAttempts.
  std::uint32_t retries_used() const { return retries_used_; }
  const std::shared_ptr<spdlog::logger>& logger() const;

 private:
  friend class Supervisor;
  SessionControl(Supervisor& owner, std::uint32_t attempt, std::uint32_t retries_used)
      : owner_(owner), attempt_(attempt), retries_used_(retries_used) {}
  void RequestStop();

  Supervisor& owner_;
  std::uint32_t attempt_;
  std::uint32_t retries_used_;
  std::optional<std::chrono::steady_clock::time_point> connected_at_;
  std::string detail_;
  std::vector<std::function<void()>> stop_handlers_;
  bool stop_requested_ = false;
};

// How the supervisor ended. kind != kStopped is a permanent, typed failure for the caller.
enum class SupervisorEnd {
  kStopped,            // Stop() was called, or a session ended cleanly
  kPermanentFailure,   // a session reported SessionOutcome::Permanent
  kAttemptsExhausted,  // max_attempts consecutive retries failed
};
const char* SupervisorEndName(SupervisorEnd end);  // "stopped", "permanent failure", ...

struct SupervisorResult {
  SupervisorEnd kind = SupervisorEnd::kStopped;
  // kPermanentFailure: the backend's reason; kAttemptsExhausted: the last transient reason;
  // kStopped: the session's reason if it ended by itself, else empty.
  std::string reason;
  std::uint32_t attempts = 0;    // connection attempts made in total
  std::uint64_t reconnects = 0;  // attempts after the first one

  bool failed() const { return kind != SupervisorEnd::kStopped; }
  // One line for logs and stderr: "permanent failure: token rejected (after 3 attempts)".
  std::string Describe() const;
};

// Suggested process exit status for tunnelctl: 0 stopped, 3 permanent failure, 4 retries
// exhausted (1 and 2 are already taken by generic errors and bad usage/config).
inline constexpr int kExitPermanentFailure = 3;
inline constexpr int kExitAttemptsExhausted = 4;
int ExitStatusFor(const SupervisorResult& result);

class Supervisor {
 public:
  using ConnectAndServe = std::function<boost::asio::awaitable<SessionOutcome>(SessionControl&)>;
  using Observer = std::function<void(const LinkStateChange&)>;

  struct Options {
    std::string name = "session";  // prefix of every log line: "ferro client", "edge conn 2"
    BackoffPolicy backoff;
    std::optional<std::uint64_t> seed;       // deterministic jitter (tests)
    std::shared_ptr<spdlog::logger> logger;  // null: spdlog's default logger
  };

  Supervisor(boost::asio::any_io_executor executor, Options options,
             ConnectAndServe connect_and_serve);
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Runs the loop until it ends; call at most once. Never throws for session errors (an
  // exception escaping connect_and_serve counts as a transient failure).
  boost::asio::awaitable<SupervisorResult> Run();
  // co_spawns Run() on the executor and calls on_done with the result.
  void Start(std::function<void(SupervisorResult)> on_done = {});

  // Ends the loop promptly: cancels a backoff wait and runs the current session's OnStop
  // handlers. Idempotent; may be called before Run().
  void Stop();

  // Called synchronously on every state change, in registration order.
  void AddObserver(Observer observer);

  LinkState state() const { return state_; }
  bool stop_requested() const { return stopping_; }
  std::uint32_t attempts() const { return attempts_; }
  std::uint64_t reconnects() const { return reconnects_; }
  const std::string& last_reason() const { return last_reason_; }
  LinkStatus Status() const;
  const std::string& name() const { return options_.name; }
  const Backoff& backoff() const { return backoff_; }
  const std::shared_ptr<spdlog::logger>& logger() const { return logger_; }

 private:
  friend class SessionControl;
  void SetState(LinkState state, std::string reason, std::chrono::milliseconds retry_in = {});
  SupervisorResult Finish(SupervisorEnd kind, std::string reason);

  boost::asio::any_io_executor executor_;
  Options options_;
  ConnectAndServe connect_and_serve_;
  std::shared_ptr<spdlog::logger> logger_;
  Backoff backoff_;
  boost::asio::steady_timer retry_timer_;
  std::vector<Observer> observers_;
  SessionControl* current_ = nullptr;
  LinkState state_ = LinkState::kIdle;
  bool stopping_ = false;
  bool started_ = false;
  std::uint32_t attempts_ = 0;
  std::uint64_t reconnects_ = 0;
  std::string last_reason_;
};

}  // namespace tunnelkit::session
