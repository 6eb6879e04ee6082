// Splice: copy bytes both ways between two streams until both directions have ended.
#pragma once

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

// Copies a->b and b->a concurrently. When one side reports eof, the other side gets
// ShutdownWrite (half-close propagates) and the opposite direction keeps flowing. Ends when
// both directions ended, or on the first error (then both streams are Reset). Both streams
// must outlive the returned awaitable. Buffers: `buffer_size` bytes per direction.
boost::asio::awaitable<SpliceResult> Splice(Stream& a, Stream& b,
                                            std::size_t buffer_size = 64 * 1024);

}  // namespace tunnelkit
