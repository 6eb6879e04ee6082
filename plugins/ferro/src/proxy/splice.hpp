// Copies bytes both ways between two streams until both directions have ended, passing
// half-closes through. An error in either direction resets both.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string_view>

#include <boost/asio/awaitable.hpp>

#include "tunnelkit/stream.hpp"

namespace tunnelkit::ferro {

struct SpliceResult {
  std::uint64_t a_to_b = 0;
  std::uint64_t b_to_a = 0;
};

// `linger`: once b has finished sending to a, a gets this long to finish too before both are
// reset (HTTP responses: the public client may keep its side open after the response).
boost::asio::awaitable<SpliceResult> Splice(
    std::shared_ptr<Stream> a, std::shared_ptr<Stream> b,
    std::chrono::milliseconds linger = std::chrono::milliseconds::max());

}  // namespace tunnelkit::ferro
