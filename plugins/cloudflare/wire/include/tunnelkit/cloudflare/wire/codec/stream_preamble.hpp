// The preamble of every edge-opened QUIC stream (specs/cloudflare.md 5.1): six signature bytes
// that name the stream kind, then for data streams the two ASCII version bytes "01". Pure: bytes
// in, result out.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace tunnelkit::cloudflare {

inline constexpr std::array<std::uint8_t, 6> kDataStreamSignature{0x0A, 0x36, 0xCD,
                                                                  0x12, 0xA1, 0x3E};
inline constexpr std::array<std::uint8_t, 6> kRpcStreamSignature{0x52, 0xBB, 0x82,
                                                                 0x5C, 0xDB, 0x65};
inline constexpr std::array<std::uint8_t, 2> kDataStreamVersion{'0', '1'};
inline constexpr std::size_t kDataPreambleSize = 8;
inline constexpr std::size_t kRpcPreambleSize = 6;

enum class StreamKind { kData, kRpc };

enum class DecodeStatus { kOk, kNeedMore, kError };

struct PreambleResult {
  DecodeStatus status = DecodeStatus::kNeedMore;
  StreamKind kind = StreamKind::kData;
  std::array<char, 2> version{};  // data streams only; read but not interpreted (as cloudflared)
  std::size_t consumed = 0;       // bytes of the preamble when kOk
  std::string error;              // when kError
};

// Looks at the first bytes of a stream. kNeedMore until 6 (RPC) or 8 (data) bytes are there;
// kError as soon as the signature cannot match either kind.
PreambleResult DecodePreamble(std::span<const std::uint8_t> bytes);

// The 8 bytes a client writes before its ConnectResponse (and the edge before a ConnectRequest).
std::array<std::uint8_t, kDataPreambleSize> EncodeDataPreamble();

}  // namespace tunnelkit::cloudflare
