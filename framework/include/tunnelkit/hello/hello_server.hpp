// The built-in hello-world origin: a small HTTP/1.1 + WebSocket server for demos and tests.
//
// Routes (any method unless noted):
//   /             a small HTML page
//   /echo         the request body, streamed back as it arrives (Content-Length kept when the
//                 request had one, chunked otherwise)
//   /bytes/N      N bytes of PatternBytes (offset 0..N-1), streamed with Content-Length; N up to
//                 2^40
//   /sse?n=K      text/event-stream: K events (default 10, max 100000) "data: tick I\n\n",
//                 I = 1..K, the first at once, then one every 100 ms (?interval_ms= overrides)
//   /ws           WebSocket echo (text and binary messages)
//   /status/N     status N with a one-line body
//   /headers      the request line and headers as plain text (proxy tests check forwarding)
// Anything else is 404. Keep-alive is honoured; malformed requests close the connection with a
// logged one-line reason.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "tunnelkit/stream.hpp"

namespace tunnelkit::hello {

// The /bytes/N body: byte at offset i is byte (i % 8) (little-endian) of SplitMix64(i / 8),
// where SplitMix64(x) = z ^ (z >> 31) with z = x + 0x9E3779B97F4A7C15,
// z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9, z = (z ^ (z >> 27)) * 0x94D049BB133111EB.
// Fills `size` bytes starting at stream offset `offset`.
void PatternBytes(std::uint64_t offset, unsigned char* out, std::size_t size);

// Serves HTTP/1.1 requests arriving on `stream` until the peer closes or an error occurs.
boost::asio::awaitable<void> ServeConnection(Stream& stream);

// An in-process connection to the hello-world origin: returns one end of a MakeStreamPair
// whose other end is served by ServeConnection on `executor` (it ends when this end closes).
std::unique_ptr<Stream> ConnectInProcess(boost::asio::any_io_executor executor);

// Listens on a TCP endpoint and serves every connection with ServeConnection.
class HelloServer {
 public:
  // Binds and listens at once (throws boost::system::system_error if it cannot). Port 0 picks
  // a free port; local_endpoint() tells which.
  HelloServer(boost::asio::io_context& io, const boost::asio::ip::tcp::endpoint& listen);
  ~HelloServer();
  HelloServer(const HelloServer&) = delete;
  HelloServer& operator=(const HelloServer&) = delete;

  boost::asio::ip::tcp::endpoint local_endpoint() const;
  // Starts accepting (connections are served on the io_context).
  void Start();
  // Stops accepting; open connections finish on their own.
  void Stop();

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace tunnelkit::hello
