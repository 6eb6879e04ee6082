// Real child processes for tests: run to completion with captured output, or keep running in
// the background while the test talks to it. Every wait is bounded.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace tunnelkit::test {

struct ProcessResult {
  int exit_status = -1;  // exit code, or 128+signal
  std::string out;
  std::string err;
  bool timed_out = false;
};

// Runs argv[0] with the arguments and waits at most `timeout`.
ProcessResult RunProcess(const std::vector<std::string>& argv,
                         std::chrono::milliseconds timeout = std::chrono::seconds(30),
                         const std::map<std::string, std::string>& env = {});

// Limits applied in the child between fork and exec.
struct ChildLimits {
  // RLIMIT_NOFILE (soft and hard) when > 0: a small descriptor table, to run a server out of
  // descriptors with a few hundred connections (EMFILE tests).
  int max_open_files = 0;
};

// A background process whose stdout and stderr are collected into one log.
class ChildProcess {
 public:
  ChildProcess() = default;
  explicit ChildProcess(const std::vector<std::string>& argv,
                        const std::map<std::string, std::string>& env = {},
                        const ChildLimits& limits = {});
  ~ChildProcess();
  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // Waits until `needle` appears in the combined output; returns false on timeout or exit.
  bool WaitForOutput(const std::string& needle,
                     std::chrono::milliseconds timeout = std::chrono::seconds(15));
  // The combined output so far.
  std::string Output();
  bool Running();
  // Sends `signal` and waits for the exit (SIGKILL after `timeout`); returns the exit status.
  int Stop(int signal, std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // Waits for the process to exit by itself; nullopt on timeout.
  std::optional<int> Wait(std::chrono::milliseconds timeout);
  pid_t pid() const { return pid_; }

 private:
  void Drain(std::chrono::milliseconds wait);
  pid_t pid_ = -1;
  int fd_ = -1;
  std::string output_;
  std::optional<int> status_;
};

// A TCP port on 127.0.0.1 that was free a moment ago (bind to 0, read it, close).
int FreeTcpPort();
int FreeUdpPort();

// Waits until a TCP connect to 127.0.0.1:port succeeds.
bool WaitForTcpPort(int port, std::chrono::milliseconds timeout = std::chrono::seconds(15));

// Hex SHA-256 of a byte string (OpenSSL).
std::string Sha256Hex(const std::string& data);

}  // namespace tunnelkit::test
