// FerroMuxCodec: the ferro wire behind the core multiplexer's FrameCodec interface.
#include <gtest/gtest.h>

#include "codec/mux_codec.hpp"

namespace tunnelkit::ferro {
namespace {

// The multiplexer codec works on plain byte vectors (not the ferro Bytes type).
using MuxBytes = std::vector<std::uint8_t>;

MuxBytes FromHex(const std::string& hex) {
  MuxBytes out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<std::uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

mux::Frame MuxFrame(mux::FrameKind kind, mux::StreamId id, std::string_view payload = {},
                    mux::Priority priority = mux::Priority::kNormal) {
  mux::Frame f;
  f.kind = kind;
  f.stream_id = id;
  f.priority = priority;
  f.payload = {reinterpret_cast<const std::uint8_t*>(payload.data()), payload.size()};
  return f;
}

TEST(FerroMuxCodec, EncodesTheSpecVectors) {
  FerroMuxCodec codec(false);
  MuxBytes out;
  EXPECT_EQ(codec.Encode(MuxFrame(mux::FrameKind::kData, 2, "GET / HTTP/1.1\r\n"), out), "");
  EXPECT_EQ(out, FromHex("00000016010000000200474554202f20485454502f312e310d0a"));
  out.clear();
  EXPECT_EQ(codec.Encode(MuxFrame(mux::FrameKind::kOpen, 2), out), "");
  EXPECT_EQ(out, FromHex("0000000700040200000000"));
  out.clear();
  const std::string tcp(1, static_cast<char>(Protocol::kTcp));
  EXPECT_EQ(codec.Encode(MuxFrame(mux::FrameKind::kOpen, 4, tcp, mux::Priority::kHigh), out), "");
  EXPECT_EQ(out, FromHex("0000000700040405000002"));
  out.clear();
  EXPECT_EQ(codec.Encode(MuxFrame(mux::FrameKind::kClose, 2), out), "");
  EXPECT_EQ(out, FromHex("0000000400070200"));
  out.clear();
  EXPECT_EQ(codec.Encode(MuxFrame(mux::FrameKind::kReset, 2, "boom"), out), "");
  EXPECT_EQ(out, FromHex("000000090007020204626f6f6d"));
}

TEST(FerroMuxCodec, DecodesIntoViewsOfTheInput) {
  FerroMuxCodec codec(true);
  const MuxBytes data = FromHex("00000011010000002a0168656c6c6f20776f726c64");
  auto r = codec.Decode(data);
  ASSERT_EQ(r.status, mux::DecodeResult::Status::kFrame) << r.error;
  EXPECT_EQ(r.consumed, data.size());
  EXPECT_EQ(r.frame.kind, mux::FrameKind::kData);
  EXPECT_EQ(r.frame.stream_id, 42u);
  EXPECT_EQ(r.frame.text(), "hello world");
  EXPECT_EQ(r.frame.payload.data(), data.data() + 10);

  const MuxBytes open = FromHex("0000000700040405000002");
  r = codec.Decode(open);
  ASSERT_EQ(r.status, mux::DecodeResult::Status::kFrame) << r.error;
  EXPECT_EQ(r.frame.kind, mux::FrameKind::kOpen);
  EXPECT_EQ(r.frame.stream_id, 4u);
  EXPECT_EQ(r.frame.priority, mux::Priority::kHigh);
  ASSERT_EQ(r.frame.payload.size(), 1u);
  EXPECT_EQ(r.frame.payload[0], static_cast<std::uint8_t>(Protocol::kTcp));

  const MuxBytes reset = FromHex("000000090007020204626f6f6d");
  r = codec.Decode(reset);
  ASSERT_EQ(r.status, mux::DecodeResult::Status::kFrame) << r.error;
  EXPECT_EQ(r.frame.kind, mux::FrameKind::kReset);
  EXPECT_EQ(r.frame.text(), "boom");

  const MuxBytes heartbeat = FromHex("0000000b0008fd0068e5cf8b010000");
  r = codec.Decode(heartbeat);
  ASSERT_EQ(r.status, mux::DecodeResult::Status::kFrame) << r.error;
  EXPECT_EQ(r.frame.kind, mux::FrameKind::kControl);
  EXPECT_EQ(r.frame.priority, mux::Priority::kCritical);
  EXPECT_EQ(MuxBytes(r.frame.payload.begin(), r.frame.payload.end()), heartbeat);

  // A control frame passes back out unchanged.
  MuxBytes out;
  EXPECT_EQ(codec.Encode(r.frame, out), "");
  EXPECT_EQ(out, heartbeat);
}

TEST(FerroMuxCodec, ControlEncodedDataPointsAtItsBytes) {
  FerroMuxCodec codec(false);
  const MuxBytes frame = {0, 0, 0, 7, 0x00, 0x06, 0x03, 0x02, 'h', 'i', 0x01};
  auto r = codec.Decode(frame);
  ASSERT_EQ(r.status, mux::DecodeResult::Status::kFrame) << r.error;
  EXPECT_EQ(r.frame.kind, mux::FrameKind::kData);
  EXPECT_EQ(r.frame.text(), "hi");
}

TEST(FerroMuxCodec, WindowUpdateOnlyWithTkFlow) {
  FerroMuxCodec plain(false);
  FerroMuxCodec flow(true);
  EXPECT_FALSE(plain.SupportsWindowUpdate());
  EXPECT_TRUE(flow.SupportsWindowUpdate());
  mux::Frame update = MuxFrame(mux::FrameKind::kWindowUpdate, 3);
  update.credit = 65536;
  MuxBytes out;
  EXPECT_NE(plain.Encode(update, out), "");
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(flow.Encode(update, out), "");
  auto r = flow.Decode(out);
  ASSERT_EQ(r.status, mux::DecodeResult::Status::kFrame) << r.error;
  EXPECT_EQ(r.frame.kind, mux::FrameKind::kWindowUpdate);
  EXPECT_EQ(r.frame.credit, 65536u);
  EXPECT_EQ(plain.Decode(out).status, mux::DecodeResult::Status::kError);
}

TEST(FerroMuxCodec, PartialAndMalformedInput) {
  FerroMuxCodec codec(false);
  const MuxBytes data = FromHex("00000011010000002a0168656c6c6f20776f726c64");
  for (std::size_t n = 0; n < data.size(); ++n) {
    EXPECT_EQ(codec.Decode(std::span(data.data(), n)).status, mux::DecodeResult::Status::kNeedMore);
  }
  auto r = codec.Decode(FromHex("0000000102"));
  EXPECT_EQ(r.status, mux::DecodeResult::Status::kError);
  EXPECT_NE(r.error.find("unknown frame type"), std::string::npos);
  MuxBytes out;
  const std::string bad(1, 9);
  EXPECT_NE(codec.Encode(MuxFrame(mux::FrameKind::kOpen, 2, bad), out), "");
  EXPECT_NE(codec.Encode(MuxFrame(mux::FrameKind::kControl, 0, "junk"), out), "");
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(codec.MaxDataPayload(), 64u * 1024u);
}

// Issue 14, defect 7: stream id 247 written as the overlong varint "fb f7 00". The decoder once
// took the protocol byte at the offset a one-byte id would leave, i.e. from inside the varint
// (0xf7). Overlong varints are refused (one value, one encoding), and the protocol comes from
// the decoded OpenStream.
TEST(FerroMuxCodec, OverlongStreamIdIsRefused) {
  FerroMuxCodec codec(false);
  const MuxBytes input = FromHex(
      "00000009000"
      "4fbf70000000000");
  const auto r = codec.Decode(input);
  EXPECT_EQ(r.status, mux::DecodeResult::Status::kError);
  EXPECT_NE(r.error.find("overlong"), std::string::npos) << r.error;
  // The same frame with a protocol index written overlong ("fb 05 00" for TCP).
  const auto p =
      codec.Decode(FromHex("0000000900040"
                           "4fb05000000"
                           "02"));
  EXPECT_EQ(p.status, mux::DecodeResult::Status::kError);
}

TEST(FerroMuxCodec, OpenProtocolFollowsAWideStreamId) {
  FerroMuxCodec codec(false);
  // OpenStream id=300 (fb 2c 01) TCP, headers [], body_hint None, priority High.
  const MuxBytes input = FromHex(
      "0000000900"
      "04fb2c0105000002");
  const auto r = codec.Decode(input);
  ASSERT_EQ(r.status, mux::DecodeResult::Status::kFrame) << r.error;
  EXPECT_EQ(r.frame.kind, mux::FrameKind::kOpen);
  EXPECT_EQ(r.frame.stream_id, 300u);
  ASSERT_EQ(r.frame.payload.size(), 1u);
  EXPECT_EQ(r.frame.payload[0], static_cast<std::uint8_t>(Protocol::kTcp));
  EXPECT_EQ(r.frame.priority, mux::Priority::kHigh);
  MuxBytes out;  // and it encodes back to the same bytes
  EXPECT_EQ(codec.Encode(r.frame, out), "");
  EXPECT_EQ(out, input);
}

}  // namespace
}  // namespace tunnelkit::ferro
