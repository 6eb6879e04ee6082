#include "codec/mux_codec.hpp"

#include <array>

namespace tunnelkit::ferro {

namespace {

// The open metadata byte of each Protocol (its index), for frames to point at: the decoded
// OpenStream says which, never a position in the input.
constexpr std::array<std::uint8_t, kProtocolCount> kProtocolIndex{0, 1, 2, 3, 4, 5, 6};

}  // namespace

StreamPriority ToFerroPriority(mux::Priority priority) {
  switch (priority) {
    case mux::Priority::kLow:
      return StreamPriority::kLow;
    case mux::Priority::kNormal:
      return StreamPriority::kNormal;
    case mux::Priority::kHigh:
      return StreamPriority::kHigh;
    case mux::Priority::kCritical:
      return StreamPriority::kCritical;
  }
  return StreamPriority::kNormal;
}

mux::Priority ToMuxPriority(StreamPriority priority) {
  switch (priority) {
    case StreamPriority::kLow:
      return mux::Priority::kLow;
    case StreamPriority::kNormal:
      return mux::Priority::kNormal;
    case StreamPriority::kHigh:
      return mux::Priority::kHigh;
    case StreamPriority::kCritical:
      return mux::Priority::kCritical;
  }
  return mux::Priority::kNormal;
}

namespace {

// EncodeFrame into the multiplexer's buffer type.
std::string AppendFrame(const Frame& frame, std::vector<std::uint8_t>& out,
                        std::uint32_t max_frame_size) {
  Bytes bytes;
  std::string error;
  if (!EncodeFrame(frame, bytes, error, max_frame_size)) return error;
  out.insert(out.end(), bytes.begin(), bytes.end());
  return {};
}

}  // namespace

std::string FerroMuxCodec::Encode(const mux::Frame& frame, std::vector<std::uint8_t>& out) {
  switch (frame.kind) {
    case mux::FrameKind::kData: {
      if (frame.payload.size() + 6 > max_frame_size_) return "Data payload beyond the frame limit";
      const auto header = EncodeDataHeader(frame.stream_id, frame.payload.size());
      out.insert(out.end(), header.begin(), header.end());
      out.insert(out.end(), frame.payload.begin(), frame.payload.end());
      return {};
    }
    case mux::FrameKind::kOpen: {
      Protocol protocol = Protocol::kHttp;
      if (!frame.payload.empty()) {
        if (frame.payload[0] >= kProtocolCount) return "unknown Protocol index in open metadata";
        protocol = static_cast<Protocol>(frame.payload[0]);
      }
      const Frame open =
          OpenStream{frame.stream_id, protocol, {}, std::nullopt, ToFerroPriority(frame.priority)};
      return AppendFrame(open, out, max_frame_size_);
    }
    case mux::FrameKind::kClose: {
      const Frame close = CloseStream{frame.stream_id, {CloseReason::Kind::kNormal, ""}};
      return AppendFrame(close, out, max_frame_size_);
    }
    case mux::FrameKind::kReset: {
      std::string reason(frame.text().substr(0, FieldLimits::kCloseMessage));
      if (reason.empty()) reason = "reset";
      const Frame close = CloseStream{frame.stream_id, {CloseReason::Kind::kError, reason}};
      return AppendFrame(close, out, max_frame_size_);
    }
    case mux::FrameKind::kWindowUpdate: {
      if (!flow_control_) return "WindowUpdate without the tk-flow capability";
      const Frame update = WindowUpdate{frame.stream_id, frame.credit};
      return AppendFrame(update, out, max_frame_size_);
    }
    case mux::FrameKind::kControl: {
      // Already a whole ferro frame (the backend encoded it); checked so nothing malformed
      // leaves this side.
      Frame check;
      DecodeResult r =
          DecodeFrame(frame.payload.data(), frame.payload.size(), check, max_frame_size_);
      if (r.status != DecodeStatus::kFrame || r.consumed != frame.payload.size()) {
        return "control payload is not exactly one ferro frame" +
               (r.error.empty() ? std::string() : ": " + r.error);
      }
      out.insert(out.end(), frame.payload.begin(), frame.payload.end());
      return {};
    }
  }
  return "unknown frame kind";
}

mux::DecodeResult FerroMuxCodec::Decode(std::span<const std::uint8_t> input) {
  Frame decoded;
  DecodeResult r = DecodeFrame(input.data(), input.size(), decoded, max_frame_size_);
  if (r.status == DecodeStatus::kNeedMore) return mux::DecodeResult::NeedMore();
  if (r.status == DecodeStatus::kError) return mux::DecodeResult::Error(r.error);
  const std::size_t end = r.consumed;
  mux::Frame out;
  if (auto* data = std::get_if<Data>(&decoded)) {
    out.kind = mux::FrameKind::kData;
    out.stream_id = data->stream_id;
    // Point into the input: a type-0x01 payload follows the 10-byte header; a bincode Data
    // ends with its bytes and then the end-of-stream bool.
    const std::size_t start =
        input[4] == kFrameTypeData ? kDataFrameHeaderSize : end - 1 - data->data.size();
    out.payload = input.subspan(start, data->data.size());
    return mux::DecodeResult::Ok(out, end);
  }
  if (auto* open = std::get_if<OpenStream>(&decoded)) {
    out.kind = mux::FrameKind::kOpen;
    out.stream_id = open->stream_id;
    out.priority = ToMuxPriority(open->priority);
    out.payload =
        std::span<const std::uint8_t>(&kProtocolIndex[static_cast<std::size_t>(open->protocol)], 1);
    return mux::DecodeResult::Ok(out, end);
  }
  if (auto* close = std::get_if<CloseStream>(&decoded)) {
    out.stream_id = close->stream_id;
    if (close->reason.kind == CloseReason::Kind::kNormal) {
      out.kind = mux::FrameKind::kClose;
    } else {
      out.kind = mux::FrameKind::kReset;
      out.code = static_cast<std::uint32_t>(close->reason.kind);
      out.payload = input.subspan(end - close->reason.message.size(), close->reason.message.size());
    }
    return mux::DecodeResult::Ok(out, end);
  }
  if (auto* update = std::get_if<WindowUpdate>(&decoded)) {
    if (!flow_control_) {
      return mux::DecodeResult::Error("WindowUpdate received without the tk-flow capability");
    }
    out.kind = mux::FrameKind::kWindowUpdate;
    out.stream_id = update->stream_id;
    out.credit = update->increment;
    return mux::DecodeResult::Ok(out, end);
  }
  out.kind = mux::FrameKind::kControl;
  out.priority = std::holds_alternative<Heartbeat>(decoded) ||
                         std::holds_alternative<HeartbeatAck>(decoded) ||
                         std::holds_alternative<HandshakeAck>(decoded)
                     ? mux::Priority::kCritical
                     : mux::Priority::kNormal;
  out.payload = input.subspan(0, end);
  return mux::DecodeResult::Ok(out, end);
}

}  // namespace tunnelkit::ferro
