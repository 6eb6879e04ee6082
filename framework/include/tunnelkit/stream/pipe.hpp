// An in-memory pair of connected streams (like socketpair): bytes written to one end are read
// from the other, with half-close and reset. Buffering per direction is bounded by `capacity`
// (Write suspends until the reader drains). Both ends run on one executor. Used for in-process
// origins (hello_world) and tests.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <utility>

#include <boost/asio/any_io_executor.hpp>

#include "tunnelkit/stream.hpp"

namespace tunnelkit {

// Destroying one end resets both directions (the other end's reads and writes fail with
// connection_reset), as closing a socket would.
std::pair<std::unique_ptr<Stream>, std::unique_ptr<Stream>> MakeStreamPair(
    boost::asio::any_io_executor executor, std::size_t capacity = 256 * 1024,
    const std::string& name = "pipe");

}  // namespace tunnelkit
