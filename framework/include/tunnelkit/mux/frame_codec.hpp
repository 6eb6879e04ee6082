// FrameCodec: what a backend supplies so that the multiplexer can speak its wire format.
//
// A codec is pure (no I/O, no Asio): Encode appends bytes, Decode parses bytes. One codec
// instance serves one session, so Decode may keep state between calls (e.g. a negotiated
// version). Every length must be bounded; malformed input is a kError with a one-line reason,
// after which the session is closed with that reason.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "tunnelkit/mux/frame.hpp"

namespace tunnelkit::mux {

struct DecodeResult {
  enum class Status {
    kNeedMore,  // input holds no complete frame yet; call again with more bytes appended
    kFrame,     // `frame` decoded from the first `consumed` bytes of the input
    kError,     // malformed input; `error` says why; the session closes
  };
  Status status = Status::kNeedMore;
  std::size_t consumed = 0;
  Frame frame;
  std::string error;

  static DecodeResult NeedMore() { return {}; }
  static DecodeResult Ok(const Frame& frame, std::size_t consumed) {
    return {Status::kFrame, consumed, frame, {}};
  }
  static DecodeResult Error(std::string reason) {
    return {Status::kError, 0, {}, std::move(reason)};
  }
};

class FrameCodec {
 public:
  virtual ~FrameCodec() = default;

  // Appends the wire form of `frame` to `out`. Returns an empty string on success, or a reason
  // (the session then closes). The mux never asks for a kind the codec says it cannot express
  // and never passes a Data payload larger than MaxDataPayload().
  virtual std::string Encode(const Frame& frame, std::vector<std::uint8_t>& out) = 0;

  // Decodes the first frame of `input` (which may be partial). See DecodeResult. A frame whose
  // bytes are complete but which the mux does not need (e.g. an acknowledgement the backend
  // ignores) may be returned as kControl and dropped by the backend's control handler.
  virtual DecodeResult Decode(std::span<const std::uint8_t> input) = 0;

  // Whether this wire can carry kWindowUpdate. When false, credit flow control is off on the
  // wire and the mux relies on bounded receive buffers plus transport backpressure.
  virtual bool SupportsWindowUpdate() const = 0;

  // Whether this wire can carry kReset. When false the mux sends kClose instead (the peer sees
  // an ordinary end of stream) and never expects kReset.
  virtual bool SupportsReset() const { return true; }

  // Largest Data payload in one frame (ferro: 64 KiB by convention). The mux splits writes.
  virtual std::size_t MaxDataPayload() const = 0;
};

}  // namespace tunnelkit::mux
