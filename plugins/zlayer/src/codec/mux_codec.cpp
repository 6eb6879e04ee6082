#include "codec/mux_codec.hpp"

#include <string_view>

#include "codec/utf8.hpp"

namespace tunnelkit::zlayer::codec {

namespace {

void PutU16(std::vector<std::uint8_t>& out, std::uint16_t v) {
  out.push_back(static_cast<std::uint8_t>(v >> 8));
  out.push_back(static_cast<std::uint8_t>(v));
}

void PutU32(std::vector<std::uint8_t>& out, std::uint32_t v) {
  out.push_back(static_cast<std::uint8_t>(v >> 24));
  out.push_back(static_cast<std::uint8_t>(v >> 16));
  out.push_back(static_cast<std::uint8_t>(v >> 8));
  out.push_back(static_cast<std::uint8_t>(v));
}

std::uint16_t GetU16(const std::uint8_t* p) {
  return static_cast<std::uint16_t>(p[0] << 8 | p[1]);
}

std::uint32_t GetU32(const std::uint8_t* p) {
  return static_cast<std::uint32_t>(p[0]) << 24 | static_cast<std::uint32_t>(p[1]) << 16 |
         static_cast<std::uint32_t>(p[2]) << 8 | static_cast<std::uint32_t>(p[3]);
}

void PutHeader(std::vector<std::uint8_t>& out, MuxFrameType type, mux::StreamId id) {
  out.push_back(static_cast<std::uint8_t>(type));
  PutU32(out, id);
}

std::string Named(std::string_view what, const std::string& detail) {
  return "mux frame: " + std::string(what) + ": " + detail;
}

}  // namespace

std::string ZlayerMuxCodec::Encode(const mux::Frame& frame, std::vector<std::uint8_t>& out) {
  if (frame.kind != mux::FrameKind::kControl && frame.stream_id == 0) {
    return "mux frame: stream id 0 is reserved";
  }
  switch (frame.kind) {
    case mux::FrameKind::kOpen: {
      if (frame.payload.size() > kMuxMaxMetadata) {
        return Named("open", "metadata of " + std::to_string(frame.payload.size()) +
                                 " bytes exceeds " + std::to_string(kMuxMaxMetadata));
      }
      PutHeader(out, MuxFrameType::kOpen, frame.stream_id);
      out.push_back(static_cast<std::uint8_t>(frame.priority));
      out.push_back(static_cast<std::uint8_t>(frame.payload.size()));
      out.insert(out.end(), frame.payload.begin(), frame.payload.end());
      return {};
    }
    case mux::FrameKind::kData: {
      if (frame.payload.size() > kMuxMaxDataPayload) {
        return Named("data", "payload of " + std::to_string(frame.payload.size()) +
                                 " bytes exceeds " + std::to_string(kMuxMaxDataPayload));
      }
      PutHeader(out, MuxFrameType::kData, frame.stream_id);
      PutU32(out, static_cast<std::uint32_t>(frame.payload.size()));
      out.insert(out.end(), frame.payload.begin(), frame.payload.end());
      return {};
    }
    case mux::FrameKind::kClose:
      PutHeader(out, MuxFrameType::kClose, frame.stream_id);
      return {};
    case mux::FrameKind::kReset: {
      // A reason that does not fit is cut (at a UTF-8 boundary): a reset must always go out.
      std::string_view reason = frame.text().substr(0, kMuxMaxReason);
      while (!reason.empty() && !IsValidUtf8(reason)) reason.remove_suffix(1);
      PutHeader(out, MuxFrameType::kReset, frame.stream_id);
      PutU32(out, frame.code);
      PutU16(out, static_cast<std::uint16_t>(reason.size()));
      out.insert(out.end(), reason.begin(), reason.end());
      return {};
    }
    case mux::FrameKind::kWindowUpdate:
      if (frame.credit == 0 || frame.credit > kMuxMaxCredit) {
        return Named("window update", "credit " + std::to_string(frame.credit) + " outside 1.." +
                                          std::to_string(kMuxMaxCredit));
      }
      PutHeader(out, MuxFrameType::kWindowUpdate, frame.stream_id);
      PutU32(out, frame.credit);
      return {};
    case mux::FrameKind::kControl:
      return "mux frame: this wire has no control frames";
  }
  return "mux frame: unknown kind";
}

mux::DecodeResult ZlayerMuxCodec::Decode(std::span<const std::uint8_t> input) {
  if (input.size() < kMuxFrameHeader) return mux::DecodeResult::NeedMore();
  const std::uint8_t type = input[0];
  const mux::StreamId id = GetU32(&input[1]);
  if (type < 0x01 || type > 0x05) {
    return mux::DecodeResult::Error("mux frame: unknown type " + std::to_string(type));
  }
  if (id == 0) return mux::DecodeResult::Error("mux frame: stream id 0 is reserved");
  const std::uint8_t* body = input.data() + kMuxFrameHeader;
  const std::size_t available = input.size() - kMuxFrameHeader;
  mux::Frame frame;
  frame.stream_id = id;
  switch (static_cast<MuxFrameType>(type)) {
    case MuxFrameType::kOpen: {
      if (available < 2) return mux::DecodeResult::NeedMore();
      if (body[0] > static_cast<std::uint8_t>(mux::Priority::kCritical)) {
        return mux::DecodeResult::Error("mux frame: open: unknown priority " +
                                        std::to_string(body[0]));
      }
      const std::size_t length = body[1];
      if (length > kMuxMaxMetadata) {
        return mux::DecodeResult::Error("mux frame: open: metadata of " + std::to_string(length) +
                                        " bytes exceeds " + std::to_string(kMuxMaxMetadata));
      }
      if (available < 2 + length) return mux::DecodeResult::NeedMore();
      frame.kind = mux::FrameKind::kOpen;
      frame.priority = static_cast<mux::Priority>(body[0]);
      frame.payload = std::span<const std::uint8_t>(body + 2, length);
      return mux::DecodeResult::Ok(frame, kMuxFrameHeader + 2 + length);
    }
    case MuxFrameType::kData: {
      if (available < 4) return mux::DecodeResult::NeedMore();
      const std::uint32_t length = GetU32(body);
      if (length > kMuxMaxDataPayload) {
        return mux::DecodeResult::Error("mux frame: data: payload of " + std::to_string(length) +
                                        " bytes exceeds " + std::to_string(kMuxMaxDataPayload));
      }
      if (available < 4 + static_cast<std::size_t>(length)) return mux::DecodeResult::NeedMore();
      frame.kind = mux::FrameKind::kData;
      frame.payload = std::span<const std::uint8_t>(body + 4, length);
      return mux::DecodeResult::Ok(frame, kMuxFrameHeader + 4 + length);
    }
    case MuxFrameType::kClose:
      frame.kind = mux::FrameKind::kClose;
      return mux::DecodeResult::Ok(frame, kMuxFrameHeader);
    case MuxFrameType::kReset: {
      if (available < 6) return mux::DecodeResult::NeedMore();
      const std::uint32_t code = GetU32(body);
      const std::size_t length = GetU16(body + 4);
      if (length > kMuxMaxReason) {
        return mux::DecodeResult::Error("mux frame: reset: reason of " + std::to_string(length) +
                                        " bytes exceeds " + std::to_string(kMuxMaxReason));
      }
      if (available < 6 + length) return mux::DecodeResult::NeedMore();
      frame.kind = mux::FrameKind::kReset;
      frame.code = code;
      frame.payload = std::span<const std::uint8_t>(body + 6, length);
      if (!IsValidUtf8(frame.text())) {
        return mux::DecodeResult::Error("mux frame: reset: reason is not valid UTF-8");
      }
      return mux::DecodeResult::Ok(frame, kMuxFrameHeader + 6 + length);
    }
    case MuxFrameType::kWindowUpdate: {
      if (available < 4) return mux::DecodeResult::NeedMore();
      const std::uint32_t credit = GetU32(body);
      if (credit == 0 || credit > kMuxMaxCredit) {
        return mux::DecodeResult::Error("mux frame: window update: credit " +
                                        std::to_string(credit) + " outside 1.." +
                                        std::to_string(kMuxMaxCredit));
      }
      frame.kind = mux::FrameKind::kWindowUpdate;
      frame.credit = credit;
      return mux::DecodeResult::Ok(frame, kMuxFrameHeader + 4);
    }
  }
  return mux::DecodeResult::Error("mux frame: unknown type");
}

}  // namespace tunnelkit::zlayer::codec
