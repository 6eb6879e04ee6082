// Limits and knobs of one multiplexed session. Defaults suit a tunnel carrying HTTP traffic.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace tunnelkit::mux {

// Which stream ids this side allocates. Ferro: client odd (1, 3, 5...), server even (2, 4...).
enum class IdParity : std::uint8_t { kOdd, kEven };

// Credit every stream starts with, in each direction, when credit flow control is on the wire.
// It is part of our window extension: both sides assume it without saying so; a larger
// receive window is granted with a WindowUpdate right after the stream opens.
inline constexpr std::uint32_t kInitialStreamWindow = 256 * 1024;

struct MuxConfig {
  IdParity local_ids = IdParity::kOdd;

  // Credit flow control: true = send WindowUpdate frames and honour the peer's credit, if the
  // codec can express them (FrameCodec::SupportsWindowUpdate). Both sides must agree (the
  // backend negotiates it, e.g. a handshake capability); MuxSession::SetWireFlowControl can
  // change it before the first stream opens.
  bool wire_flow_control = true;

  // Receive window per stream (bytes). With credit it is what the peer may send ahead of our
  // reader (raised to kInitialStreamWindow if smaller); without credit it is the bound on one
  // stream's receive buffer beyond which the session stops reading the transport (backpressure).
  std::uint32_t stream_window = kInitialStreamWindow;

  // Bound on received-but-unread bytes over all streams; beyond it the reader pauses.
  std::size_t max_session_buffered = 64 * 1024 * 1024;

  // Bound on bytes queued for sending over all streams; stream writes suspend beyond it.
  std::size_t max_send_queued = 4 * 1024 * 1024;

  // Concurrent streams in the table (both directions). A peer Open beyond it is reset
  // (reset_code::kRefused); a local Open beyond it fails.
  std::size_t max_streams = 1024;

  // Peer-opened streams waiting for Accept(); beyond it the peer's Open is reset.
  std::size_t max_pending_accept = 128;

  // One transport write carries at most this many frames / bytes (a batch may exceed the byte
  // bound by one frame).
  std::size_t max_batch_frames = 256;
  std::size_t max_batch_bytes = 256 * 1024;

  // Data chunk size of the buffer pool; Data frames carry at most
  // min(chunk_size, codec.MaxDataPayload()) bytes.
  std::size_t chunk_size = 16 * 1024;
  std::size_t pool_max_free = 256;

  // Largest frame the reader buffers while waiting for the rest of it; must cover the codec's
  // own maximum frame size (ferro: 16 MiB + 5).
  std::size_t max_frame_size = 16 * 1024 * 1024 + 16;

  // Prefix for stream descriptions in logs: "<label> stream 4".
  std::string label = "mux";

  // Empty if valid, else the name of the offending field and why.
  std::string Validate() const;
};

}  // namespace tunnelkit::mux
