// Splice: copy bytes both ways between two streams until both directions have ended.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

#include <boost/asio/awaitable.hpp>
#include <boost/system/error_code.hpp>

#include "tunnelkit/stream.hpp"

namespace tunnelkit {

struct SpliceResult {
  std::uint64_t a_to_b = 0;  // bytes read from a and written to b
  std::uint64_t b_to_a = 0;
  // First error seen in either direction (eof is not an error). When set, both streams were
  // Reset so the other direction ended too.
  boost::system::error_code ec;
};

struct SpliceOptions {
  // Bytes per direction for streams without a faster path.
  std::size_t buffer_size = 64 * 1024;
  // Once b has finished sending to a, a gets this long to finish too before both are reset
  // (HTTP responses: the public client may keep its side open after the response).
  std::chrono::milliseconds linger = std::chrono::milliseconds::max();
};

// Copies a->b and b->a concurrently. When one side reports eof, the other side gets
// ShutdownWrite (half-close propagates) and the opposite direction keeps flowing. Ends when
// both directions ended, or on the first error (then both streams are Reset). Both streams
// must outlive the returned awaitable. Buffers: `buffer_size` bytes per direction.
//
// Fast paths, chosen by the streams' capability queries (Stream::plain_tcp_socket, framed):
// a direction waits on a plain socket before it takes a buffer; a multiplexed stream's
// payloads go whole (no copy between frame and socket), and on a plain-TCP session a bulk
// direction between it and a plain TCP socket moves through splice(2).
boost::asio::awaitable<SpliceResult> Splice(Stream& a, Stream& b, SpliceOptions options);
inline boost::asio::awaitable<SpliceResult> Splice(Stream& a, Stream& b,
                                                   std::size_t buffer_size = 64 * 1024) {
  return Splice(a, b, SpliceOptions{buffer_size});
}

}  // namespace tunnelkit
