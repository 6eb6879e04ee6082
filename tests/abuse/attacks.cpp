#include "attacks.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <mutex>
#include <random>

#include <gtest/gtest.h>

namespace tunnelkit::abuse {

std::string Junk(std::size_t n, std::uint32_t seed) {
  std::string out(n, '\0');
  std::mt19937 rng(seed);
  for (auto& c : out) c = static_cast<char>(rng());
  return out;
}

std::string FerroControlFrame(const std::string& bincode_payload) {
  const std::uint32_t length = static_cast<std::uint32_t>(bincode_payload.size() + 1);
  std::string frame = {static_cast<char>(length >> 24), static_cast<char>(length >> 16),
                       static_cast<char>(length >> 8), static_cast<char>(length), '\0'};
  return frame + bincode_payload;
}

std::string FerroHandshake(const std::string& token) {
  std::string payload(1, '\0');                // Frame::Handshake
  payload += static_cast<char>(token.size());  // tokens here are < 251 bytes: a 1-byte varint
  payload += token;
  payload += std::string("\x00\x01\x01\x01\x05", 5) + "basic";
  return FerroControlFrame(payload);
}

std::string WebSocketUpgrade(const std::string& path) {
  return "GET " + path +
         " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
}

std::string WebSocketBinaryHeader(std::uint64_t size) {
  std::string header(1, static_cast<char>(0x82));  // FIN, binary
  if (size < 126) {
    header += static_cast<char>(0x80 | size);
  } else if (size < 65536) {
    header += static_cast<char>(0x80 | 126);
    header += static_cast<char>(size >> 8);
    header += static_cast<char>(size);
  } else {
    header += static_cast<char>(0x80 | 127);
    for (int shift = 56; shift >= 0; shift -= 8) header += static_cast<char>(size >> shift);
  }
  return header + std::string(4, '\0');  // mask key 0: the payload goes as it is
}

std::string ZlayerAuthFrame(const std::string& token) {
  std::string body = {static_cast<char>(token.size() >> 8), static_cast<char>(token.size())};
  body += token;
  body += std::string(16, '\x11');  // client id
  const auto length = static_cast<std::uint32_t>(body.size());
  std::string message = {'\x01', static_cast<char>(length >> 24), static_cast<char>(length >> 16),
                         static_cast<char>(length >> 8), static_cast<char>(length)};
  message += body;
  return WebSocketBinaryHeader(message.size()) + message;
}

void RunParallel(int count, int threads, const std::function<void(int)>& per_connection) {
  std::atomic<int> next{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      for (int i = next++; i < count; i = next++) per_connection(i);
    });
  }
  for (auto& w : workers) w.join();
}

int OpenWebSocket(int port, const std::string& path, Milliseconds timeout) {
  const int fd = ConnectFrom(port);
  if (fd < 0) return -1;
  if (!WriteAll(fd, WebSocketUpgrade(path), timeout)) {
    ::close(fd);
    return -1;
  }
  // Read the 101 head byte by byte, so nothing after it is consumed.
  std::string head;
  const auto deadline = Clock::now() + timeout;
  while (head.find("\r\n\r\n") == std::string::npos && Clock::now() < deadline) {
    char c;
    const ssize_t n = ::recv(fd, &c, 1, 0);
    if (n == 1) {
      head += c;
      continue;
    }
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) break;
    pollfd p{fd, POLLIN, 0};
    ::poll(&p, 1, 50);
  }
  if (head.rfind("HTTP/1.1 101", 0) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

void OpenIdle(int port, int count, SocketSet& held) {
  for (int i = 0; i < count; ++i) held.Add(ConnectFrom(port, kAttackerSource, 200ms));
}

int AbortedDownloads(int port, const std::string& request, int count, int parallel,
                     std::size_t read_bytes, Milliseconds budget) {
  std::atomic<int> aborted{0};
  const auto budget_end = Clock::now() + budget;
  RunParallel(count, parallel, [&](int) {
    if (Clock::now() > budget_end) return;  // a stalled tunnel must not stretch the test
    const int fd = ConnectFrom(port);
    if (fd < 0) return;
    if (WriteAll(fd, request, 5s)) {
      std::size_t got = 0;
      char buf[65536];
      const auto deadline = Clock::now() + (kSanitized ? 6s : 2s);
      while (got < read_bytes && Clock::now() < deadline) {
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n == 0) break;
        if (n > 0) {
          got += static_cast<std::size_t>(n);
          continue;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK) break;
        pollfd p{fd, POLLIN, 0};
        ::poll(&p, 1, 100);
      }
      if (got >= read_bytes) ++aborted;
    }
    ::close(fd);
  });
  return aborted;
}

std::map<std::string, int> LeftOpen(int port, const std::vector<Payload>& payloads, int count,
                                    int threads, Milliseconds wait) {
  std::mutex mutex;
  std::map<std::string, int> left_open;
  RunParallel(count, threads, [&](int i) {
    const Payload& payload = payloads[static_cast<std::size_t>(i) % payloads.size()];
    const int fd = payload.websocket_path.empty() ? ConnectFrom(port)
                                                  : OpenWebSocket(port, payload.websocket_path);
    if (fd < 0) return;
    WriteAll(fd, payload.bytes, 2s);
    std::string reply;
    const bool closed = WaitClosed(fd, wait, &reply);
    // A WebSocket Close frame (0x88) from the server also ends it: the server then waits for
    // our Close, which an attacker never sends.
    const bool websocket_closed =
        !payload.websocket_path.empty() && reply.find('\x88') != std::string::npos;
    if (!closed && !websocket_closed && reply.rfind("HTTP/1.1 4", 0) != 0) {
      std::lock_guard<std::mutex> lock(mutex);
      ++left_open[payload.name];
    }
    ::close(fd);
  });
  return left_open;
}

void ExpectNoneLeftOpen(const std::map<std::string, int>& left_open) {
  for (const auto& [name, count] : left_open) {
    ADD_FAILURE() << count << " connections that sent '" << name
                  << "' were neither closed nor refused";
  }
}

int DescriptorsAfter(pid_t pid, Milliseconds settle) {
  std::this_thread::sleep_for(settle);
  return test::OpenDescriptors(pid);
}

}  // namespace tunnelkit::abuse
