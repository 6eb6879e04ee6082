// The multiplexer's frame vocabulary. A backend's FrameCodec maps these onto its wire format
// (ferro: 4-byte length + type byte; zlayer data plane: one WebSocket message per frame).
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

namespace tunnelkit::mux {

using StreamId = std::uint32_t;

// Writer scheduling class. The writer always drains a higher class before a lower one and keeps
// FIFO order within a class. Numeric values are ours, not any wire's.
enum class Priority : std::uint8_t { kLow = 0, kNormal = 1, kHigh = 2, kCritical = 3 };
inline constexpr int kPriorityLevels = 4;

enum class FrameKind : std::uint8_t {
  kOpen,          // stream_id, priority, payload = opaque open metadata (backend-defined)
  kData,          // stream_id, payload = stream bytes (may be empty)
  kClose,         // stream_id: half-close, the sender will send no more Data on it
  kReset,         // stream_id, code, payload = reason text (UTF-8): abort both directions
  kWindowUpdate,  // stream_id, credit: the receiver may now be sent `credit` more bytes
  kControl,       // payload = backend frame (heartbeat, handshake...), handed to the backend
};

const char* ToString(FrameKind kind);
const char* ToString(Priority priority);

// A non-owning view of one frame. On decode, `payload` points into the codec's input or into
// storage the codec owns, and must stay valid until the next Decode call (the mux copies what it
// keeps before that); on encode it points at the mux's buffers for the duration of Encode.
struct Frame {
  FrameKind kind = FrameKind::kData;
  StreamId stream_id = 0;
  Priority priority = Priority::kNormal;  // kOpen: the stream's priority; kControl: its class
  std::uint32_t credit = 0;               // kWindowUpdate
  std::uint32_t code = 0;                 // kReset: backend-defined error code (0 = cancelled)
  std::span<const std::uint8_t> payload;

  std::string_view text() const {
    return {reinterpret_cast<const char*>(payload.data()), payload.size()};
  }
};

// Reset codes the multiplexer itself uses (a codec may map them to its own).
namespace reset_code {
inline constexpr std::uint32_t kCancelled = 0;    // the local user reset or dropped the stream
inline constexpr std::uint32_t kRefused = 1;      // stream cap or accept queue full
inline constexpr std::uint32_t kFlowControl = 2;  // unused by the mux today (kept for codecs)
inline constexpr std::uint32_t kInternal = 3;
}  // namespace reset_code

}  // namespace tunnelkit::mux
