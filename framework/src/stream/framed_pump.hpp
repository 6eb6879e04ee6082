// Splice's direction when one side is a multiplexed stream with frame-level operations
// (Stream::framed()): payloads forwarded whole, and the kernel path between a plain-TCP socket
// and a stream of a plain-TCP session. Internal to splice.cpp.
#pragma once

#include <cstdint>
#include <memory>

#include <boost/asio/awaitable.hpp>
#include <boost/system/error_code.hpp>

#include "tunnelkit/stream.hpp"

namespace tunnelkit::detail {

// Shared by the two directions of one Splice: the first error stops both.
struct SpliceFailure {
  boost::system::error_code ec;
};

// Copies `from` -> `to` until eof (then `to` is half-closed) or an error in either direction
// (then both are reset). Returns the bytes moved.
boost::asio::awaitable<std::uint64_t> PumpFramed(Stream& from, Stream& to,
                                                 std::shared_ptr<SpliceFailure> failure);

}  // namespace tunnelkit::detail
