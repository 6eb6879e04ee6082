// A small length-prefixed wire format for the multiplexer's tests:
//   u32 BE length of what follows | u8 kind | u32 BE stream id | u8 priority | u32 BE value |
//   payload
// `value` is the credit of WindowUpdate and the code of Reset. Kinds follow FrameKind; a
// "no window" / "no reset" variant models wires like FerroTunnel's.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "tunnelkit/mux/frame_codec.hpp"

namespace tunnelkit::mux::test {

class TestCodec final : public FrameCodec {
 public:
  static constexpr std::size_t kHeader = 4 + 1 + 4 + 1 + 4;
  static constexpr std::size_t kMaxPayload = 1024 * 1024;

  explicit TestCodec(bool window_updates = true, bool resets = true,
                     std::size_t max_data = 64 * 1024)
      : window_updates_(window_updates), resets_(resets), max_data_(max_data) {}

  std::string Encode(const Frame& frame, std::vector<std::uint8_t>& out) override {
    if (frame.kind == FrameKind::kWindowUpdate && !window_updates_) return "no WindowUpdate";
    if (frame.kind == FrameKind::kReset && !resets_) return "no Reset";
    if (frame.payload.size() > kMaxPayload) return "payload too large";
    const std::uint32_t length = static_cast<std::uint32_t>(kHeader - 4 + frame.payload.size());
    const std::uint32_t value = frame.kind == FrameKind::kReset ? frame.code : frame.credit;
    PutU32(out, length);
    out.push_back(static_cast<std::uint8_t>(frame.kind));
    PutU32(out, frame.stream_id);
    out.push_back(static_cast<std::uint8_t>(frame.priority));
    PutU32(out, value);
    out.insert(out.end(), frame.payload.begin(), frame.payload.end());
    return {};
  }

  DecodeResult Decode(std::span<const std::uint8_t> in) override {
    if (in.size() < 4) return DecodeResult::NeedMore();
    const std::uint32_t length = GetU32(in.data());
    if (length < kHeader - 4)
      return DecodeResult::Error("frame length " + std::to_string(length) + " below header size");
    if (length > kHeader - 4 + kMaxPayload)
      return DecodeResult::Error("frame length " + std::to_string(length) + " too large");
    if (in.size() < 4 + length) return DecodeResult::NeedMore();
    const std::uint8_t kind = in[4];
    if (kind > static_cast<std::uint8_t>(FrameKind::kControl)) {
      return DecodeResult::Error("unknown frame kind " + std::to_string(kind));
    }
    const std::uint8_t priority = in[9];
    if (priority > 3) return DecodeResult::Error("bad priority " + std::to_string(priority));
    Frame frame;
    frame.kind = static_cast<FrameKind>(kind);
    frame.stream_id = GetU32(in.data() + 5);
    frame.priority = static_cast<Priority>(priority);
    const std::uint32_t value = GetU32(in.data() + 10);
    if (frame.kind == FrameKind::kReset) {
      frame.code = value;
    } else {
      frame.credit = value;
    }
    frame.payload = in.subspan(kHeader, 4 + length - kHeader);
    return DecodeResult::Ok(frame, 4 + length);
  }

  bool SupportsWindowUpdate() const override { return window_updates_; }
  bool SupportsReset() const override { return resets_; }
  std::size_t MaxDataPayload() const override { return max_data_; }

  static void PutU32(std::vector<std::uint8_t>& out, std::uint32_t v) {
    out.push_back(static_cast<std::uint8_t>(v >> 24));
    out.push_back(static_cast<std::uint8_t>(v >> 16));
    out.push_back(static_cast<std::uint8_t>(v >> 8));
    out.push_back(static_cast<std::uint8_t>(v));
  }
  static std::uint32_t GetU32(const std::uint8_t* p) {
    return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
           std::uint32_t{p[3]};
  }

 private:
  bool window_updates_;
  bool resets_;
  std::size_t max_data_;
};

}  // namespace tunnelkit::mux::test
