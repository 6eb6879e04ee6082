// The wire of a shared data WebSocket ("tunnelkit-data-mux.v1"): several public connections
// over one data WebSocket, carried by the core multiplexer (tunnelkit::mux::MuxSession). The
// WebSocket is a byte channel here (message boundaries mean nothing), so every frame is
// self-delimiting. Pure: no I/O. All integers big-endian.
//
//   frame = kind u8 | stream_id u32 (never 0) | body
//   0x01 Open          priority u8 (0..3) | metadata_len u8 (<= 64) | metadata
//                      (metadata: the 16-byte connection id of the server's Connect)
//   0x02 Data          length u32 (<= kMuxMaxDataPayload) | bytes
//   0x03 Close         (empty)   half-close: the sender writes no more on this stream
//   0x04 Reset         code u32 | reason_len u16 (<= 512) | reason (UTF-8)
//   0x05 WindowUpdate  credit u32 (1 .. 2^31)
//
// Flow control: per stream credit, kInitialStreamWindow each way to start, always on (both
// ends are tunnelkit; there is nothing to negotiate).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "tunnelkit/mux/frame_codec.hpp"

namespace tunnelkit::zlayer::codec {

enum class MuxFrameType : std::uint8_t {
  kOpen = 0x01,
  kData = 0x02,
  kClose = 0x03,
  kReset = 0x04,
  kWindowUpdate = 0x05,
};

inline constexpr std::size_t kMuxFrameHeader = 5;  // kind + stream id
inline constexpr std::size_t kMuxMaxDataPayload = 64 * 1024;
inline constexpr std::size_t kMuxMaxMetadata = 64;
inline constexpr std::size_t kMuxMaxReason = 512;
inline constexpr std::uint32_t kMuxMaxCredit = 0x80000000u;
// The largest frame on this wire (a full Data frame).
inline constexpr std::size_t kMuxMaxFrame = kMuxFrameHeader + 4 + kMuxMaxDataPayload;

class ZlayerMuxCodec final : public mux::FrameCodec {
 public:
  std::string Encode(const mux::Frame& frame, std::vector<std::uint8_t>& out) override;
  mux::DecodeResult Decode(std::span<const std::uint8_t> input) override;
  bool SupportsWindowUpdate() const override { return true; }
  std::size_t MaxDataPayload() const override { return kMuxMaxDataPayload; }
};

}  // namespace tunnelkit::zlayer::codec
