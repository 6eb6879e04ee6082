// Encoder and decoder of ZLayer control messages: a 5-byte header (type u8, payload length u32
// big-endian) and the payload. Pure functions over bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "codec/messages.hpp"

namespace tunnelkit::zlayer::codec {

inline constexpr std::size_t kHeaderSize = 5;
// Upstream's whole-message limit is 65 536 bytes, header included.
inline constexpr std::size_t kMaxMessageSize = 65536;
inline constexpr std::size_t kMaxPayloadSize = kMaxMessageSize - kHeaderSize;  // 65 531

struct DecodeResult {
  bool ok = false;
  Message message;
  std::size_t consumed = 0;  // header + payload of the decoded message
  std::string error;         // one line, set when !ok
};

// Decodes the message at the start of `bytes`. Bytes after it are left alone (`consumed` says
// where the next message starts); a WebSocket receiver ignores them, as upstream does.
DecodeResult Decode(std::span<const std::uint8_t> bytes);

struct EncodeResult {
  bool ok = false;
  std::vector<std::uint8_t> bytes;
  std::string error;  // set when !ok: a field does not fit its length prefix or the size limit
};

// Encodes one message. Never truncates: a string longer than its length field, or a payload
// above kMaxPayloadSize, is refused.
EncodeResult Encode(const Message& message);

}  // namespace tunnelkit::zlayer::codec
