#include "harness.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <regex>
#include <thread>

namespace tunnelkit::abuse {
namespace {

namespace fs = std::filesystem;
using test::ChildProcess;
using test::FreeTcpPort;

sockaddr_in Address(const char* ip, int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, ip, &addr.sin_addr);
  return addr;
}

int MillisLeft(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<Milliseconds>(deadline - Clock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}

// "service web (tcp) -> public port N" in the link's output.
int PublicPortIn(const std::string& output) {
  std::smatch match;
  if (std::regex_search(output, match, std::regex("service web \\(tcp\\) -> public port ([0-9]+)")))
    return std::stoi(match[1]);
  return 0;
}

}  // namespace

std::string Tunnelctl() {
  return TUNNELCTL_PATH;
}

std::string Cfedge() {
  return (fs::path(TUNNELCTL_PATH).parent_path() / "cfedge").string();
}

int ConnectFrom(int port, const char* source, Milliseconds timeout) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (source != nullptr) {
    sockaddr_in local = Address(source, 0);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0) {
      ::close(fd);
      return -1;
    }
  }
  sockaddr_in remote = Address("127.0.0.1", port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&remote), sizeof remote) != 0) {
    if (errno != EINPROGRESS) {
      ::close(fd);
      return -1;
    }
    pollfd p{fd, POLLOUT, 0};
    int error = 0;
    socklen_t len = sizeof error;
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1 ||
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) != 0 || error != 0) {
      ::close(fd);
      return -1;
    }
  }
  return fd;
}

bool WriteAll(int fd, const void* data, std::size_t size, Milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  const char* bytes = static_cast<const char*>(data);
  std::size_t off = 0;
  while (off < size) {
    const ssize_t n = ::send(fd, bytes + off, size - off, MSG_NOSIGNAL);
    if (n > 0) {
      off += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return false;
    const int left = MillisLeft(deadline);
    if (left == 0) return false;
    pollfd p{fd, POLLOUT, 0};
    ::poll(&p, 1, std::min(left, 100));
  }
  return true;
}

bool WaitClosed(int fd, Milliseconds timeout, std::string* into) {
  const auto deadline = Clock::now() + timeout;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n == 0) return true;
    if (n > 0) {
      if (into != nullptr) into->append(buf, static_cast<std::size_t>(n));
      continue;
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return true;  // reset
    const int left = MillisLeft(deadline);
    if (left == 0) return false;
    pollfd p{fd, POLLIN, 0};
    ::poll(&p, 1, std::min(left, 100));
  }
}

void SocketSet::Add(int fd) {
  if (fd >= 0) fds_.push_back(fd);
}

void SocketSet::CloseAll() {
  for (int fd : fds_) ::close(fd);
  fds_.clear();
}

namespace {

// Reads one response from `fd` into `legit` (status, body) before `deadline`. `buffered` holds
// bytes already read (and keeps what follows the response). Returns an error, or "".
std::string ReadResponse(int fd, std::string& buffered, Clock::time_point deadline, Legit& legit) {
  std::size_t head_end = std::string::npos;
  std::optional<std::size_t> body_size;
  char buf[65536];
  for (;;) {
    if (head_end == std::string::npos) {
      head_end = buffered.find("\r\n\r\n");
      if (head_end != std::string::npos) {
        const std::string head = buffered.substr(0, head_end);
        const auto space = head.find(' ');
        legit.status = space == std::string::npos ? 0 : std::atoi(head.c_str() + space + 1);
        std::smatch match;
        if (std::regex_search(head, match, std::regex("\r\n[Cc]ontent-[Ll]ength: *([0-9]+)")))
          body_size = std::stoul(match[1]);
      }
    }
    if (head_end != std::string::npos && body_size &&
        buffered.size() >= head_end + 4 + *body_size) {
      legit.body = buffered.substr(head_end + 4, *body_size);
      buffered.erase(0, head_end + 4 + *body_size);
      return "";
    }
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n > 0) {
      buffered.append(buf, static_cast<std::size_t>(n));
      continue;
    }
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
      if (head_end != std::string::npos && !body_size) {  // delimited by the close
        legit.body = buffered.substr(head_end + 4);
        buffered.clear();
        return "";
      }
      return n == 0 ? "closed by the server" : "read: " + std::string(strerror(errno));
    }
    const int left = MillisLeft(deadline);
    if (left == 0) return "timed out";
    pollfd p{fd, POLLIN, 0};
    ::poll(&p, 1, std::min(left, 100));
  }
}

std::string RequestText(const std::string& method, const std::string& target,
                        const std::string& host, const std::string& body) {
  std::string text = method + " " + target + " HTTP/1.1\r\nHost: " + host + "\r\n";
  if (!body.empty() || method == "POST")
    text += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  return text + "\r\n";
}

}  // namespace

Legit HttpExchange(int port, const std::string& method, const std::string& target,
                   const std::string& host, const std::string& body, Milliseconds timeout) {
  Legit legit;
  const auto start = Clock::now();
  const auto deadline = start + timeout;
  const int fd = ConnectFrom(port, "127.0.0.1", timeout);
  std::string buffered;
  if (fd < 0) {
    legit.error = "connect failed";
  } else {
    // The body is written while the response is read (an echo streams it back).
    std::atomic<bool> written{false};
    std::thread writer([&] {
      written =
          WriteAll(fd, RequestText(method, target, host, body), timeout) &&
          WriteAll(fd, body, std::chrono::duration_cast<Milliseconds>(deadline - Clock::now()));
    });
    legit.error = ReadResponse(fd, buffered, deadline, legit);
    ::shutdown(fd, SHUT_RDWR);  // ends the writer if the server answered early
    writer.join();
    ::close(fd);
  }
  legit.latency = std::chrono::duration_cast<Milliseconds>(Clock::now() - start);
  return legit;
}

KeepAliveClient::KeepAliveClient(int port, std::string host) : host_(std::move(host)) {
  fd_ = ConnectFrom(port, "127.0.0.1");
}

KeepAliveClient::~KeepAliveClient() {
  if (fd_ >= 0) ::close(fd_);
}

Legit KeepAliveClient::Get(const std::string& target, Milliseconds timeout) {
  Legit legit;
  const auto start = Clock::now();
  if (fd_ < 0) {
    legit.error = "not connected";
  } else if (!WriteAll(fd_, RequestText("GET", target, host_, {}), timeout)) {
    legit.error = "write failed";
  } else {
    legit.error = ReadResponse(fd_, buffered_, start + timeout, legit);
  }
  legit.latency = std::chrono::duration_cast<Milliseconds>(Clock::now() - start);
  return legit;
}

Observation Observe(pid_t pid, const std::function<void()>& attack,
                    const std::function<Legit()>& legit, Milliseconds latency_bound,
                    const std::function<void()>& drain, Milliseconds legit_interval) {
  Observation o;
  o.baseline_rss_kib = test::RssKib(pid);
  o.peak_rss_kib = o.baseline_rss_kib;
  const double cpu_before = test::CpuSeconds(pid);
  std::atomic<bool> finished{false};
  std::thread attacker([&] {
    attack();
    finished = true;
  });
  // Legitimate requests from a thread of their own, so a slow one does not stop sampling.
  std::thread visitor([&] {
    while (!finished) {
      const Legit reply = legit();
      if (reply.status == 200 && reply.latency <= latency_bound) {
        ++o.legit_ok;
      } else {
        o.legit_failures.push_back("status " + std::to_string(reply.status) + " after " +
                                   std::to_string(reply.latency.count()) + " ms " + reply.error);
      }
      o.worst_latency = std::max(o.worst_latency, reply.latency);
      const auto next = Clock::now() + legit_interval;
      while (!finished && Clock::now() < next) std::this_thread::sleep_for(20ms);
    }
  });
  while (!finished) {
    const std::int64_t rss = test::RssKib(pid);
    if (rss < 0) {
      o.alive = false;
    } else {
      o.peak_rss_kib = std::max(o.peak_rss_kib, rss);
    }
    drain();
    std::this_thread::sleep_for(100ms);
  }
  attacker.join();
  visitor.join();
  o.peak_rss_kib = std::max(o.peak_rss_kib, test::RssKib(pid));
  o.cpu_seconds = test::CpuSeconds(pid) - cpu_before;
  if (::kill(pid, 0) != 0) o.alive = false;
  return o;
}

void ExpectHeld(const Observation& o, std::int64_t rss_bound_kib, const std::string& what) {
  EXPECT_TRUE(o.alive) << what << ": the process died";
  const std::int64_t grown = o.peak_rss_kib - o.baseline_rss_kib;
  std::cout << "[ abuse    ] " << what << ": RSS " << o.baseline_rss_kib / 1024 << " -> peak "
            << o.peak_rss_kib / 1024 << " MiB (bound +" << rss_bound_kib / 1024 << " MiB), CPU "
            << o.cpu_seconds << " s, legit " << o.legit_ok << " ok / " << o.legit_failures.size()
            << " failed, worst " << o.worst_latency.count() << " ms\n";
  if (!kSanitized) {
    EXPECT_LE(grown, rss_bound_kib) << what << ": RSS grew by " << grown / 1024 << " MiB";
  }
  EXPECT_GE(o.legit_ok, 1) << what << ": no legitimate request was served during the attack";
  EXPECT_TRUE(o.legit_failures.empty())
      << what << ": " << o.legit_failures.size()
      << " legitimate requests failed, first: " << o.legit_failures.front();
}

bool WaitUntil(const std::function<bool()>& condition, Milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (condition()) return true;
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(50ms);
  }
}

int CountLines(const std::string& text, const std::string& needle) {
  int count = 0;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    if (std::string_view(text).substr(start, end - start).find(needle) != std::string_view::npos)
      ++count;
    start = end + 1;
  }
  return count;
}

HelloOrigin::HelloOrigin() {
  port_ = FreeTcpPort();
  process_ = ChildProcess({Tunnelctl(), "hello", "--listen", "127.0.0.1:" + std::to_string(port_)});
  if (!process_.WaitForOutput("listening", kStartWait))
    ADD_FAILURE() << "hello origin did not start: " << process_.Output();
}

void FerroStack::StartServer(const ProcessOptions& options) {
  control_port = FreeTcpPort();
  http_port = FreeTcpPort();
  tcp_port = FreeTcpPort();
  std::vector<std::string> args = {Tunnelctl(), "serve",
                                   "--backend", "ferro",
                                   "--listen",  "127.0.0.1:" + std::to_string(control_port),
                                   "--http",    "127.0.0.1:" + std::to_string(http_port),
                                   "--tcp",     "127.0.0.1:" + std::to_string(tcp_port),
                                   "--token",   kToken};
  args.insert(args.end(), options.flags.begin(), options.flags.end());
  server = ChildProcess(args, {}, options.limits);
  ASSERT_TRUE(server.WaitForOutput("listening for tunnel clients", kStartWait)) << server.Output();
}

std::vector<std::string> FerroStack::ClientArgs(int via_port, const std::string& token,
                                                const std::string& tunnel_id) const {
  return {Tunnelctl(),
          "--backend",
          "ferro",
          "--server",
          "127.0.0.1:" + std::to_string(via_port != 0 ? via_port : control_port),
          "--token",
          token,
          "--url",
          "http://127.0.0.1:" + std::to_string(origin.port()),
          "--tunnel-id",
          tunnel_id,
          "--reconnect-base",
          "100ms",
          "--reconnect-cap",
          "500ms"};
}

void FerroStack::StartClient(const ProcessOptions& options, int via_port,
                             const std::string& tunnel_id) {
  auto args = ClientArgs(via_port, kToken, tunnel_id);
  args.insert(args.end(), options.flags.begin(), options.flags.end());
  client = ChildProcess(args, {}, options.limits);
  ASSERT_TRUE(client.WaitForOutput("connected to", kStartWait)) << client.Output();
  ASSERT_TRUE(server.WaitForOutput("tunnel registered: " + tunnel_id, kStartWait))
      << server.Output();
  // The first request proves the path before any attack starts.
  ASSERT_TRUE(WaitUntil([&] { return Get().status == 200; }, 5s)) << Logs();
}

void FerroStack::Drain() {
  origin.process().Output();
  server.Output();
  client.Output();
}

std::string FerroStack::Logs() {
  std::string server_log = server.Output();
  std::string client_log = client.Output();
  // The tail is what matters and keeps failure messages readable.
  auto tail = [](const std::string& s) { return s.size() > 6000 ? s.substr(s.size() - 6000) : s; };
  return "---- server (tail)\n" + tail(server_log) + "\n---- client (tail)\n" + tail(client_log);
}

ZlayerStack::ZlayerStack() {
  std::string pattern = (fs::temp_directory_path() / "tk-abuse-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp");
  dir = pattern;
  tokens_file = dir + "/tokens";
  std::ofstream(tokens_file) << test::Sha256Hex(kToken) << "\n";
}

ZlayerStack::~ZlayerStack() {
  if (link.Running()) link.Stop(SIGKILL);
  if (server.Running()) server.Stop(SIGKILL);
  std::error_code ec;
  fs::remove_all(dir, ec);
}

void ZlayerStack::StartServer(const ProcessOptions& options) {
  control_port = FreeTcpPort();
  port_low = FreeTcpPort();
  port_high = port_low + 3;
  std::vector<std::string> args = {
      Tunnelctl(), "serve",
      "--backend", "zlayer",
      "--listen",  "127.0.0.1:" + std::to_string(control_port),
      "--ports",   std::to_string(port_low) + "-" + std::to_string(port_high),
      "--tokens",  tokens_file};
  args.insert(args.end(), options.flags.begin(), options.flags.end());
  server = ChildProcess(args, {}, options.limits);
  ASSERT_TRUE(server.WaitForOutput("zlayer server listening", kStartWait)) << server.Output();
}

void ZlayerStack::StartLink(const ProcessOptions& options, int via_port) {
  std::vector<std::string> args = {
      Tunnelctl(),
      "link",
      "--backend",
      "zlayer",
      "--server",
      "ws://127.0.0.1:" + std::to_string(via_port != 0 ? via_port : control_port) + "/tunnel/v1",
      "--token",
      kToken,
      "--service",
      "web:" + std::to_string(origin.port())};
  args.insert(args.end(), options.flags.begin(), options.flags.end());
  link = ChildProcess(args, {}, options.limits);
  ASSERT_TRUE(
      WaitUntil([&] { return (public_port = PublicPortIn(link.Output())) != 0; }, kStartWait + 5s))
      << link.Output();
  ASSERT_TRUE(WaitUntil([&] { return Get().status == 200; }, 5s)) << Logs();
}

void ZlayerStack::Drain() {
  origin.process().Output();
  server.Output();
  link.Output();
}

std::string ZlayerStack::Logs() {
  auto tail = [](const std::string& s) { return s.size() > 6000 ? s.substr(s.size() - 6000) : s; };
  return "---- server (tail)\n" + tail(server.Output()) + "\n---- link (tail)\n" +
         tail(link.Output());
}

}  // namespace tunnelkit::abuse
