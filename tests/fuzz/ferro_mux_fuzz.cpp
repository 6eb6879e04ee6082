// fuzz-links: tunnelkit_ferro_core
// fuzz-sources: plugins/ferro/src/codec/*.cpp
// fuzz-libs: fuzz_framework_text
// FerroMuxCodec, the multiplexer's view of the ferro wire: every frame it decodes must say what
// the full decoder (DecodeFrame) says about the same bytes (kind, stream id, priority, protocol,
// payload, reason), and must encode to bytes that decode to the same multiplexer frame. The
// first input byte picks the options (flow control, a small frame limit).
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <variant>
#include <vector>

#include "codec/codec.hpp"
#include "codec/mux_codec.hpp"

using namespace tunnelkit::ferro;
namespace mux = tunnelkit::mux;

namespace {

bool SameBytes(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end());
}

// The multiplexer frame agrees with the full decoder's frame.
void CheckAgainstFullDecode(const mux::Frame& frame, const Frame& full, bool flow_control) {
  if (const auto* data = std::get_if<Data>(&full)) {
    if (frame.kind != mux::FrameKind::kData || frame.stream_id != data->stream_id ||
        !SameBytes(frame.payload, data->data)) {
      std::abort();
    }
  } else if (const auto* open = std::get_if<OpenStream>(&full)) {
    if (frame.kind != mux::FrameKind::kOpen || frame.stream_id != open->stream_id ||
        frame.priority != ToMuxPriority(open->priority) || frame.payload.size() != 1 ||
        frame.payload[0] != static_cast<std::uint8_t>(open->protocol)) {
      std::abort();
    }
  } else if (const auto* close = std::get_if<CloseStream>(&full)) {
    const bool normal = close->reason.kind == CloseReason::Kind::kNormal;
    if (frame.stream_id != close->stream_id ||
        frame.kind != (normal ? mux::FrameKind::kClose : mux::FrameKind::kReset)) {
      std::abort();
    }
    if (!normal && (frame.code != static_cast<std::uint32_t>(close->reason.kind) ||
                    frame.text() != close->reason.message)) {
      std::abort();
    }
  } else if (const auto* update = std::get_if<WindowUpdate>(&full)) {
    if (!flow_control || frame.kind != mux::FrameKind::kWindowUpdate ||
        frame.stream_id != update->stream_id || frame.credit != update->increment) {
      std::abort();
    }
  } else if (frame.kind != mux::FrameKind::kControl) {
    std::abort();
  }
}

// What survives Encode: kReset carries a non-empty reason of bounded length and always
// re-decodes with the generic error code.
void CheckReencoded(const mux::Frame& frame, const mux::Frame& again) {
  if (again.kind != frame.kind || again.stream_id != frame.stream_id) std::abort();
  switch (frame.kind) {
    case mux::FrameKind::kOpen:
      if (again.priority != frame.priority || !SameBytes(again.payload, frame.payload)) {
        std::abort();
      }
      break;
    case mux::FrameKind::kWindowUpdate:
      if (again.credit != frame.credit) std::abort();
      break;
    case mux::FrameKind::kReset:
      if (!frame.payload.empty() && frame.text().size() <= FieldLimits::kCloseMessage &&
          again.text() != frame.text()) {
        std::abort();
      }
      break;
    case mux::FrameKind::kClose:
      break;
    case mux::FrameKind::kData:
    case mux::FrameKind::kControl:
      if (again.priority != frame.priority || !SameBytes(again.payload, frame.payload)) {
        std::abort();
      }
      break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const bool flow_control = (data[0] & 1) != 0;
  const std::uint32_t max_frame = (data[0] & 2) ? 4096 : kDefaultMaxFrameSize;
  std::span<const std::uint8_t> input(data + 1, size - 1);
  FerroMuxCodec codec(flow_control, max_frame);
  std::size_t pos = 0;
  while (pos < input.size()) {
    const auto rest = input.subspan(pos);
    const mux::DecodeResult r = codec.Decode(rest);
    Frame full;
    const DecodeResult full_result = DecodeFrame(rest.data(), rest.size(), full, max_frame);
    if (r.status == mux::DecodeResult::Status::kNeedMore) {
      if (full_result.status != DecodeStatus::kNeedMore) std::abort();
      break;
    }
    if (r.status == mux::DecodeResult::Status::kError) {
      if (r.error.empty()) std::abort();
      // Only a WindowUpdate without tk-flow is refused by the view alone.
      if (full_result.status == DecodeStatus::kFrame &&
          !(std::holds_alternative<WindowUpdate>(full) && !flow_control)) {
        std::abort();
      }
      break;
    }
    if (full_result.status != DecodeStatus::kFrame || r.consumed != full_result.consumed ||
        r.consumed == 0 || r.consumed > rest.size()) {
      std::abort();
    }
    CheckAgainstFullDecode(r.frame, full, flow_control);
    std::vector<std::uint8_t> encoded;
    if (r.frame.kind == mux::FrameKind::kData && r.frame.payload.size() + 6 > max_frame) {
      // Only a bincode Data frame can carry this much; the fast form refuses it on encode.
      if (!codec.Encode(r.frame, encoded).empty()) {
        pos += r.consumed;
        continue;
      }
    } else if (!codec.Encode(r.frame, encoded).empty()) {
      std::abort();
    }
    const mux::DecodeResult again = codec.Decode(encoded);
    if (again.status != mux::DecodeResult::Status::kFrame || again.consumed != encoded.size()) {
      std::abort();
    }
    CheckReencoded(r.frame, again.frame);
    pos += r.consumed;
  }
  return 0;
}
