// Attack payloads and loops shared by the ferro and zlayer abuse tests.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"

namespace tunnelkit::abuse {

// `n` bytes of deterministic junk.
std::string Junk(std::size_t n, std::uint32_t seed);

// A FerroTunnel control frame: u32 BE length (type byte + payload), type 0x00, payload.
std::string FerroControlFrame(const std::string& bincode_payload);
// A ferro Handshake (bincode: variant 0, token, no tunnel id, versions 1..1, caps [basic]).
std::string FerroHandshake(const std::string& token);

// The HTTP upgrade request of a WebSocket client for `path` (fixed key).
std::string WebSocketUpgrade(const std::string& path);
// A masked (zero mask key) client frame header for a binary message of `size` bytes.
std::string WebSocketBinaryHeader(std::uint64_t size);
// A zlayer Auth message (0x01, u32 BE length, str16 token, 16-byte client id) in one frame.
std::string ZlayerAuthFrame(const std::string& token);

// Runs `per_connection(index)` for `count` indexes on `threads` threads.
void RunParallel(int count, int threads, const std::function<void(int)>& per_connection);

// Connects from the attacker source, upgrades to WebSocket at `path`; -1 when refused.
int OpenWebSocket(int port, const std::string& path, Milliseconds timeout = 3s);

// Opens `count` idle connections from the attacker source (connects may stay pending when
// the server stops accepting); they stay open in `held`.
void OpenIdle(int port, int count, SocketSet& held);

// Sends `request` on `count` connections from the attacker source, then reads `read_bytes`
// of each reply and closes it (an aborted download), `parallel` at a time, for at most
// `budget` (each download at most 2 s, 6 s in the sanitizer tree, whose -O0 code moves data
// several times slower: 52 of 300 in 15 s were seen there). Returns how many got that far.
inline constexpr Milliseconds kAbortedDownloadsBudget =
    kSanitized ? Milliseconds(120s) : Milliseconds(15s);
int AbortedDownloads(int port, const std::string& request, int count, int parallel,
                     std::size_t read_bytes, Milliseconds budget = kAbortedDownloadsBudget);

// A malformed input, named for failure messages.
struct Payload {
  std::string name;
  std::string bytes;
  std::string websocket_path = {};  // when set: sent as frames after a WebSocket upgrade
};

// Sends the payloads round robin on `count` attacker connections, `threads` at a time, and
// returns per payload name how many connections the server left open `wait` later: neither
// closed nor answered with a 4xx status (or a WebSocket Close). A connection refused outright
// counts as closed.
std::map<std::string, int> LeftOpen(int port, const std::vector<Payload>& payloads, int count,
                                    int threads, Milliseconds wait);
// One failure per payload that left connections open.
void ExpectNoneLeftOpen(const std::map<std::string, int>& left_open);

// Descriptors the process holds after `settle` of quiet.
int DescriptorsAfter(pid_t pid, Milliseconds settle = 1s);

}  // namespace tunnelkit::abuse
