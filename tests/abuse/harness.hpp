// The shared harness of the abuse and fault suites: real tunnel stacks (`tunnelctl hello` as
// the origin, `tunnelctl serve` and its client) on loopback, attack sockets, legitimate
// requests with their latency, and a watch on the attacked process (alive, RSS, CPU).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "proc_stats.hpp"
#include "process.hpp"
#include "sanitizer.hpp"

namespace tunnelkit::abuse {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Milliseconds = std::chrono::milliseconds;

// Under ASan, memory bounds are reported but not asserted (tests/support/sanitizer.hpp), and
// processes take longer to start: a zlayer server that loads the system's roots took 8 s on
// a loaded 2-core machine with slow unwinding, where 10 s is the normal wait.
inline constexpr bool kSanitized = test::kAddressSanitizer;
inline constexpr Milliseconds kStartWait = kSanitized ? Milliseconds(60s) : Milliseconds(10s);
// How long a legitimate request may take during an attack: 1 s, or 3 s in the sanitizer tree,
// whose unoptimised (-O0) and instrumented code serves a request several times slower (1.8 s
// seen for a 1 s bound with 50 stalled readers of big responses).
inline constexpr Milliseconds kLegitLatency =
    kSanitized ? Milliseconds(3000ms) : Milliseconds(1000ms);

// Attacks come from a loopback address of their own (the whole of 127.0.0.0/8 is loopback on
// Linux; the target is always 127.0.0.1), so per-source caps tell the attacker from the
// legitimate client, which uses 127.0.0.1.
inline constexpr const char* kAttackerSource = "127.0.0.2";

std::string Tunnelctl();
std::string Cfedge();

// ---- attack sockets (plain POSIX, non-blocking, every wait bounded) ----

// Connects from `source` to 127.0.0.1:port within `timeout`; -1 on failure. Non-blocking.
int ConnectFrom(int port, const char* source = kAttackerSource, Milliseconds timeout = 2s);
// Writes all of `data` within `timeout`; false when the peer closed or time ran out.
bool WriteAll(int fd, const void* data, std::size_t size, Milliseconds timeout);
inline bool WriteAll(int fd, const std::string& data, Milliseconds timeout) {
  return WriteAll(fd, data.data(), data.size(), timeout);
}
// Reads (and discards, or appends to `into`) until the peer closes; true when it closed
// within `timeout`.
bool WaitClosed(int fd, Milliseconds timeout, std::string* into = nullptr);

// Descriptors closed on destruction (attack connections held open).
class SocketSet {
 public:
  SocketSet() = default;
  ~SocketSet() { CloseAll(); }
  SocketSet(const SocketSet&) = delete;
  SocketSet& operator=(const SocketSet&) = delete;
  void Add(int fd);
  void CloseAll();
  std::size_t size() const { return fds_.size(); }
  const std::vector<int>& fds() const { return fds_; }

 private:
  std::vector<int> fds_;
};

// ---- legitimate traffic ----

struct Legit {
  int status = 0;
  std::string error;
  std::string body;
  Milliseconds latency{0};
};

// One HTTP/1.1 request on a new connection from 127.0.0.1, the whole exchange bounded by
// `timeout` (plain sockets: Asio's blocking reads would wait forever once SO_RCVTIMEO fires).
// The response is delimited by Content-Length, or by the close.
Legit HttpExchange(int port, const std::string& method, const std::string& target,
                   const std::string& host, const std::string& body = {},
                   Milliseconds timeout = 5s);
inline Legit LegitGet(int port, const std::string& host, const std::string& target = "/",
                      Milliseconds timeout = 5s) {
  return HttpExchange(port, "GET", target, host, {}, timeout);
}

// A public HTTP/1.1 keep-alive connection opened before an attack: requests over it need no
// new descriptor at the server, so they show that an existing tunnel still serves while the
// server cannot accept.
class KeepAliveClient {
 public:
  KeepAliveClient(int port, std::string host);
  ~KeepAliveClient();
  KeepAliveClient(const KeepAliveClient&) = delete;
  KeepAliveClient& operator=(const KeepAliveClient&) = delete;
  // GET `target`; the response must carry Content-Length.
  Legit Get(const std::string& target, Milliseconds timeout = 5s);

 private:
  int fd_ = -1;
  std::string host_;
  std::string buffered_;
};

// ---- the attacked process ----

// Samples a process while an attack runs: peak RSS, CPU time, legitimate requests sent every
// `legit_interval`, each required to succeed within `latency_bound`.
struct Observation {
  std::int64_t baseline_rss_kib = 0;
  std::int64_t peak_rss_kib = 0;
  double cpu_seconds = 0;  // used by the process during the attack
  int legit_ok = 0;
  Milliseconds worst_latency{0};
  std::vector<std::string> legit_failures;  // "status 502 after 12 ms: ..."
  bool alive = true;
};

// Runs `attack` on a thread of its own; until it returns, samples `pid` every 100 ms and calls
// `legit` every `legit_interval`. `legit` returns a Legit; status 200 within `latency_bound`
// counts as a success. `drain` runs with each sample: it reads the stack's output pipes, or a
// process flooding its log would block on a full pipe and look hung.
Observation Observe(pid_t pid, const std::function<void()>& attack,
                    const std::function<Legit()>& legit, Milliseconds latency_bound,
                    const std::function<void()>& drain, Milliseconds legit_interval = 500ms);

// The checks every abuse test makes: process alive, RSS grown by at most `rss_bound_kib`
// (reported only under ASan), every legitimate request during the attack served in time.
void ExpectHeld(const Observation& o, std::int64_t rss_bound_kib, const std::string& what);

// Polls `condition` every 50 ms until it holds or `timeout` passes.
bool WaitUntil(const std::function<bool()>& condition, Milliseconds timeout);

// Lines of `text` containing `needle`.
int CountLines(const std::string& text, const std::string& needle);

// ---- stacks ----

// `tunnelctl hello` on a free port: /, /bytes/N, /echo, /sse.
class HelloOrigin {
 public:
  HelloOrigin();
  int port() const { return port_; }
  test::ChildProcess& process() { return process_; }

 private:
  int port_ = 0;
  test::ChildProcess process_;
};

struct ProcessOptions {
  std::vector<std::string> flags;  // appended to the command line
  test::ChildLimits limits;
};

// A ferro server with HTTP and TCP ingress and a ferro client exposing a HelloOrigin as tunnel
// `app`. The client may be pointed at another port (an impairment proxy).
class FerroStack {
 public:
  void StartServer(const ProcessOptions& options = {});
  // `via_port` 0: the server's control port.
  void StartClient(const ProcessOptions& options = {}, int via_port = 0,
                   const std::string& tunnel_id = "app");
  std::vector<std::string> ClientArgs(int via_port, const std::string& token,
                                      const std::string& tunnel_id) const;
  Legit Get(const std::string& target = "/", Milliseconds timeout = 5s) const {
    return LegitGet(http_port, "app", target, timeout);
  }
  std::string Logs();  // server and client output, for failure messages
  void Drain();        // reads every process's output pipe

  static constexpr const char* kToken = "abuse-suite-token";
  HelloOrigin origin;
  int control_port = 0;
  int http_port = 0;
  int tcp_port = 0;
  test::ChildProcess server;
  test::ChildProcess client;
};

// A zlayer server (public ports from a small range) and a link exposing a HelloOrigin as
// service `web`; `public_port` is the port the server gave it.
class ZlayerStack {
 public:
  ZlayerStack();
  ~ZlayerStack();
  void StartServer(const ProcessOptions& options = {});
  void StartLink(const ProcessOptions& options = {}, int via_port = 0);
  Legit Get(const std::string& target = "/", Milliseconds timeout = 5s) const {
    return LegitGet(public_port, "web", target, timeout);
  }
  std::string Logs();
  void Drain();

  static constexpr const char* kToken = "tun_abuse_suite_token";
  HelloOrigin origin;
  std::string dir;
  std::string tokens_file;
  int control_port = 0;
  int port_low = 0;
  int port_high = 0;
  int public_port = 0;
  test::ChildProcess server;
  test::ChildProcess link;
};

}  // namespace tunnelkit::abuse
