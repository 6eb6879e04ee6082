#include "process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>
#include <thread>

#include <openssl/sha.h>

namespace tunnelkit::test {
namespace {

using Clock = std::chrono::steady_clock;

int DecodeStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

pid_t Spawn(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
            int out_fd, int err_fd, const ChildLimits& limits = {}) {
  pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    setpgid(0, 0);
    if (limits.max_open_files > 0) {
      const rlimit files{static_cast<rlim_t>(limits.max_open_files),
                         static_cast<rlim_t>(limits.max_open_files)};
      if (setrlimit(RLIMIT_NOFILE, &files) != 0) {
        dprintf(err_fd, "setrlimit(RLIMIT_NOFILE): %s\n", strerror(errno));
        _exit(127);
      }
    }
    dup2(out_fd, 1);
    dup2(err_fd, 2);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    for (const auto& [key, value] : env) setenv(key.c_str(), value.c_str(), 1);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    dprintf(2, "exec %s: %s\n", args[0], strerror(errno));
    _exit(127);
  }
  return pid;
}

void ReadAvailable(int fd, std::string& into) {
  char buf[8192];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) return;
    into.append(buf, static_cast<size_t>(n));
  }
}

int FreePort(int type) {
  int fd = socket(AF_INET, type, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    throw std::runtime_error("bind failed");
  }
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

}  // namespace

ProcessResult RunProcess(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                         const std::map<std::string, std::string>& env) {
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0) {
    throw std::runtime_error("pipe failed");
  }
  pid_t pid = Spawn(argv, env, out_pipe[1], err_pipe[1]);
  close(out_pipe[1]);
  close(err_pipe[1]);
  fcntl(out_pipe[0], F_SETFL, O_NONBLOCK);
  fcntl(err_pipe[0], F_SETFL, O_NONBLOCK);
  ProcessResult result;
  auto deadline = Clock::now() + timeout;
  int status = 0;
  bool exited = false;
  while (!exited) {
    pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
    poll(fds, 2, 20);
    ReadAvailable(out_pipe[0], result.out);
    ReadAvailable(err_pipe[0], result.err);
    if (waitpid(pid, &status, WNOHANG) == pid) {
      exited = true;
    } else if (Clock::now() > deadline) {
      result.timed_out = true;
      kill(-pid, SIGKILL);
      waitpid(pid, &status, 0);
      exited = true;
    }
  }
  ReadAvailable(out_pipe[0], result.out);
  ReadAvailable(err_pipe[0], result.err);
  close(out_pipe[0]);
  close(err_pipe[0]);
  result.exit_status = DecodeStatus(status);
  return result;
}

ChildProcess::ChildProcess(const std::vector<std::string>& argv,
                           const std::map<std::string, std::string>& env,
                           const ChildLimits& limits) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  // Room for a burst of log lines between two reads (the default is 64 KiB): a child that
  // fills the pipe blocks on its next log line.
  fcntl(p[0], F_SETPIPE_SZ, 1 << 20);
  pid_ = Spawn(argv, env, p[1], p[1], limits);
  close(p[1]);
  fd_ = p[0];
  fcntl(fd_, F_SETFL, O_NONBLOCK);
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0 && !status_) Stop(SIGKILL, std::chrono::seconds(5));
  if (fd_ >= 0) close(fd_);
}

ChildProcess::ChildProcess(ChildProcess&& other) noexcept {
  *this = std::move(other);
}

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  if (this != &other) {
    if (pid_ > 0 && !status_) Stop(SIGKILL, std::chrono::seconds(5));
    if (fd_ >= 0) close(fd_);
    pid_ = std::exchange(other.pid_, -1);
    fd_ = std::exchange(other.fd_, -1);
    output_ = std::move(other.output_);
    status_ = other.status_;
  }
  return *this;
}

void ChildProcess::Drain(std::chrono::milliseconds wait) {
  if (fd_ < 0) return;
  pollfd fds{fd_, POLLIN, 0};
  poll(&fds, 1, static_cast<int>(wait.count()));
  ReadAvailable(fd_, output_);
}

bool ChildProcess::Running() {
  if (pid_ <= 0 || status_) return false;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) == pid_) {
    status_ = DecodeStatus(status);
    return false;
  }
  return true;
}

bool ChildProcess::WaitForOutput(const std::string& needle, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    Drain(std::chrono::milliseconds(20));
    if (output_.find(needle) != std::string::npos) return true;
    if (!Running()) {
      Drain(std::chrono::milliseconds(0));
      return output_.find(needle) != std::string::npos;
    }
    if (Clock::now() > deadline) return false;
  }
}

std::string ChildProcess::Output() {
  Drain(std::chrono::milliseconds(0));
  return output_;
}

std::optional<int> ChildProcess::Wait(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (Running()) {
    Drain(std::chrono::milliseconds(20));
    if (Clock::now() > deadline) return std::nullopt;
  }
  Drain(std::chrono::milliseconds(0));
  return status_;
}

int ChildProcess::Stop(int signal, std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return -1;
  if (status_) return *status_;
  kill(pid_, signal);
  if (auto status = Wait(timeout)) return *status;
  kill(-pid_, SIGKILL);
  kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  status_ = DecodeStatus(status);
  Drain(std::chrono::milliseconds(0));
  return *status_;
}

int FreeTcpPort() {
  return FreePort(SOCK_STREAM);
}
int FreeUdpPort() {
  return FreePort(SOCK_DGRAM);
}

bool WaitForTcpPort(int port, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    int rc = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    close(fd);
    if (rc == 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  return false;
}

std::string Sha256Hex(const std::string& data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned char b : digest) {
    out += hex[b >> 4];
    out += hex[b & 15];
  }
  return out;
}

}  // namespace tunnelkit::test
