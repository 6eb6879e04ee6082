// The handshake step before the multiplexer starts (specs/ferrotunnel.md 2.6): one frame each
// way on the raw transport, plus the token and version rules.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include <boost/asio/awaitable.hpp>

#include "codec/codec.hpp"
#include "tunnelkit/stream.hpp"

namespace tunnelkit::ferro {

// The token format FerroTunnel accepts: non-empty, at most 256 bytes, printable ASCII.
bool IsWellFormedToken(std::string_view token);

// Constant-time comparison (equal-length SHA-256 digests compared with CRYPTO_memcmp), so
// neither contents nor length leak through timing.
bool TokensEqual(std::string_view presented, std::string_view configured);

// Overlap of [client_min, client_max] with ours (1..1): the highest common version.
std::optional<std::uint8_t> NegotiateVersion(std::uint8_t client_min, std::uint8_t client_max);

bool HasCapability(const std::vector<std::string>& capabilities, std::string_view name);

Uuid RandomUuidV4();

// Reads one frame from `transport`, feeding `decoder` (bytes past the frame stay in it).
// Fails with a reason on timeout, transport error, or a malformed frame.
struct ReadFrameResult {
  std::optional<Frame> frame;
  std::string error;
};
boost::asio::awaitable<ReadFrameResult> ReadOneFrame(Stream& transport, FrameDecoder& decoder,
                                                     std::chrono::milliseconds timeout);

boost::asio::awaitable<boost::system::error_code> WriteOneFrame(Stream& transport,
                                                                const Frame& frame);

}  // namespace tunnelkit::ferro
