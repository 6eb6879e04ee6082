// Golden vectors (tests/data/vectors/ferrotunnel.json), round trips and malformed input for
// the FerroTunnel codec.
#include <cstring>
#include <fstream>
#include <map>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "codec/bincode.hpp"
#include "codec/codec.hpp"

namespace tunnelkit::ferro {
namespace {

Bytes FromHex(const std::string& hex) {
  Bytes out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<std::uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

std::string ToHex(const Bytes& bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (auto b : bytes) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 0x0F]);
  }
  return out;
}

Bytes Text(const std::string& s) {
  return Bytes(s.begin(), s.end());
}

nlohmann::json LoadVectors() {
  std::ifstream in(std::string(TUNNELKIT_TEST_DATA_DIR) + "/vectors/ferrotunnel.json");
  EXPECT_TRUE(in.good());
  return nlohmann::json::parse(in);
}

// What each named vector must decode to (the spec's 2.7 section).
std::map<std::string, Frame> ExpectedFrames() {
  std::map<std::string, Frame> m;
  m["Handshake token=secret tunnel_id=my-app versions 1-1 caps [basic,tcp]"] =
      Handshake{"secret", "my-app", 1, 1, {"basic", "tcp"}};
  m["Handshake token=secret tunnel_id=None caps [basic]"] =
      Handshake{"secret", std::nullopt, 1, 1, {"basic"}};
  m["HandshakeAck session=00112233-4455-6677-8899-aabbccddeeff Success v1 caps [basic]"] =
      HandshakeAck{{0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc,
                    0xdd, 0xee, 0xff},
                   HandshakeStatus::kSuccess,
                   1,
                   {"basic"}};
  m["HandshakeAck nil session InvalidToken v0 caps []"] =
      HandshakeAck{{}, HandshakeStatus::kInvalidToken, 0, {}};
  m["Heartbeat ts=1700000000000"] = Heartbeat{1700000000000ull};
  m["HeartbeatAck ts=12345"] = HeartbeatAck{12345};
  m["OpenStream id=2 HTTP headers [] body_hint None priority Normal"] =
      OpenStream{2, Protocol::kHttp, {}, std::nullopt, StreamPriority::kNormal};
  m["OpenStream id=4 TCP headers [] body_hint None priority High"] =
      OpenStream{4, Protocol::kTcp, {}, std::nullopt, StreamPriority::kHigh};
  m["Data id=2 'GET / HTTP/1.1\\r\\n' no EOS"] = Data{2, Text("GET / HTTP/1.1\r\n"), false};
  m["Data id=42 'hello world' EOS"] = Data{42, Text("hello world"), true};
  m["CloseStream id=2 Normal"] = CloseStream{2, {CloseReason::Kind::kNormal, ""}};
  m["CloseStream id=2 Error(boom)"] = CloseStream{2, {CloseReason::Kind::kError, "boom"}};
  m["Error stream Some(1) ProtocolError 'test error'"] =
      Error{1u, ErrorCode::kProtocolError, "test error"};
  return m;
}

Bytes Encode(const Frame& frame) {
  Bytes out;
  std::string error;
  EXPECT_TRUE(EncodeFrame(frame, out, error)) << error;
  return out;
}

DecodeResult Decode(const Bytes& bytes, Frame& out, std::uint32_t max = kDefaultMaxFrameSize) {
  return DecodeFrame(bytes.data(), bytes.size(), out, max);
}

// A control frame around a hand-written bincode payload.
Bytes Control(const Bytes& payload) {
  Bytes out;
  const auto length = static_cast<std::uint32_t>(payload.size() + 1);
  out = {static_cast<std::uint8_t>(length >> 24), static_cast<std::uint8_t>(length >> 16),
         static_cast<std::uint8_t>(length >> 8), static_cast<std::uint8_t>(length), 0x00};
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

std::string DecodeError(const Bytes& bytes, std::uint32_t max = kDefaultMaxFrameSize) {
  Frame frame;
  DecodeResult r = Decode(bytes, frame, max);
  EXPECT_EQ(r.status, DecodeStatus::kError) << "accepted as " << FrameName(frame);
  EXPECT_FALSE(r.error.empty());
  return r.error;
}

TEST(FerroCodec, GoldenVectorsDecodeToTheExpectedFrames) {
  const auto vectors = LoadVectors();
  const auto expected = ExpectedFrames();
  ASSERT_EQ(vectors["frames"].size(), expected.size());
  for (const auto& v : vectors["frames"]) {
    const std::string name = v["name"];
    SCOPED_TRACE(name);
    auto it = expected.find(name);
    ASSERT_NE(it, expected.end()) << "no expectation for this vector";
    const Bytes bytes = FromHex(v["hex"]);
    Frame frame;
    DecodeResult r = Decode(bytes, frame);
    ASSERT_EQ(r.status, DecodeStatus::kFrame) << r.error;
    EXPECT_EQ(r.consumed, bytes.size());
    EXPECT_EQ(frame, it->second) << FrameName(frame);
  }
}

TEST(FerroCodec, GoldenVectorsEncodeToIdenticalBytes) {
  const auto expected = ExpectedFrames();
  // Held in a variable: a range-for over a member of a temporary reads freed memory.
  const auto vectors = LoadVectors();
  for (const auto& v : vectors["frames"]) {
    const std::string name = v["name"];
    SCOPED_TRACE(name);
    EXPECT_EQ(ToHex(Encode(expected.at(name))), v["hex"].get<std::string>());
  }
}

TEST(FerroCodec, GoldenRejectsFail) {
  const auto vectors = LoadVectors();
  for (const auto& v : vectors["must_reject"]) {
    const std::string why = v["why"];
    SCOPED_TRACE(why);
    std::string error = DecodeError(FromHex(v["hex"]));
    // The same bytes fed one at a time never yield a frame and end in the same error.
    FrameDecoder decoder;
    const Bytes bytes = FromHex(v["hex"]);
    Frame frame;
    DecodeStatus status = DecodeStatus::kNeedMore;
    for (auto b : bytes) {
      decoder.Feed(&b, 1);
      status = decoder.Next(frame);
      ASSERT_NE(status, DecodeStatus::kFrame);
      if (status == DecodeStatus::kError) break;
    }
    EXPECT_EQ(status, DecodeStatus::kError);
    EXPECT_EQ(decoder.error(), error);
  }
}

TEST(FerroCodec, SpecVectorOfUpstreamDataParse) {
  // length=10, type 1, id 42, flags 1, "abcd": consumes 14 bytes.
  const Bytes bytes = FromHex("0000000a010000002a0161626364ff");
  Frame frame;
  DecodeResult r = Decode(bytes, frame);
  ASSERT_EQ(r.status, DecodeStatus::kFrame) << r.error;
  EXPECT_EQ(r.consumed, 14u);
  EXPECT_EQ(frame, Frame(Data{42, Text("abcd"), true}));
}

TEST(FerroCodec, AllocationVectorNamesTheField) {
  std::string error = DecodeError(FromHex("00000009000a0000fcc0e1e400"));
  EXPECT_NE(error.find("Error.message"), std::string::npos) << error;
  EXPECT_NE(error.find("15000000"), std::string::npos) << error;
}

std::vector<Frame> EveryVariant() {
  std::vector<Frame> frames;
  frames.push_back(Handshake{"tok", "app", 1, 2, {"basic", "tcp", "tk-flow"}});
  frames.push_back(Handshake{"", std::nullopt, 0, 255, {}});
  for (std::uint32_t s = 0; s < kHandshakeStatusCount; ++s) {
    frames.push_back(HandshakeAck{{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
                                  static_cast<HandshakeStatus>(s),
                                  1,
                                  {"basic"}});
  }
  for (std::uint32_t p = 0; p < kProtocolCount; ++p) {
    frames.push_back(Register{"svc", static_cast<Protocol>(p), {{"k", "v"}, {"a", "ü"}}});
  }
  for (std::uint32_t s = 0; s < kRegisterStatusCount; ++s) {
    frames.push_back(RegisterAck{"https://x.example", static_cast<RegisterStatus>(s)});
  }
  for (std::uint32_t p = 0; p < kStreamPriorityCount; ++p) {
    frames.push_back(OpenStream{0xFFFFFFFFu,
                                Protocol::kWebSocket,
                                {{"Host", "a"}},
                                1ull << 40,
                                static_cast<StreamPriority>(p)});
  }
  for (std::uint32_t s = 0; s < kStreamStatusCount; ++s) {
    frames.push_back(StreamAck{300, static_cast<StreamStatus>(s)});
  }
  frames.push_back(Data{7, Bytes(70000, 0xAB), false});
  frames.push_back(Data{8, {}, true});
  for (std::uint32_t k = 0; k < kCloseReasonCount; ++k) {
    CloseReason reason{static_cast<CloseReason::Kind>(k), ""};
    if (reason.kind == CloseReason::Kind::kError) reason.message = "went wrong";
    frames.push_back(CloseStream{65536, reason});
  }
  for (std::uint64_t ts :
       {0ull, 250ull, 251ull, 65535ull, 65536ull, 0xFFFFFFFFull, 0x100000000ull, ~0ull}) {
    frames.push_back(Heartbeat{ts});
    frames.push_back(HeartbeatAck{ts});
  }
  for (std::uint32_t c = 0; c < kErrorCodeCount; ++c) {
    frames.push_back(Error{std::nullopt, static_cast<ErrorCode>(c), "m"});
  }
  frames.push_back(PluginData{"plug", Text("raw")});
  frames.push_back(WindowUpdate{5, 1u << 20});
  return frames;
}

TEST(FerroCodec, EveryVariantRoundTrips) {
  for (const Frame& frame : EveryVariant()) {
    SCOPED_TRACE(FrameName(frame));
    const Bytes bytes = Encode(frame);
    Frame decoded;
    DecodeResult r = Decode(bytes, decoded);
    ASSERT_EQ(r.status, DecodeStatus::kFrame) << r.error;
    EXPECT_EQ(r.consumed, bytes.size());
    EXPECT_EQ(decoded, frame);
  }
}

TEST(FerroCodec, VarintBoundaries) {
  auto encoded = [](std::uint64_t v) {
    Bytes out;
    bincode::Writer(out).Varint(v);
    return ToHex(out);
  };
  EXPECT_EQ(encoded(0), "00");
  EXPECT_EQ(encoded(250), "fa");
  EXPECT_EQ(encoded(251), "fbfb00");
  EXPECT_EQ(encoded(65535), "fbffff");
  EXPECT_EQ(encoded(65536), "fc00000100");
  EXPECT_EQ(encoded(0xFFFFFFFFull), "fcffffffff");
  EXPECT_EQ(encoded(0x100000000ull), "fd0000000001000000");
}

TEST(FerroCodec, OverlongVarintsAreRefused) {
  // bincode writes each integer in its shortest form; a longer one is refused, naming the
  // field (issue 14, defect 7).
  const std::vector<std::pair<Bytes, const char*>> overlong = {
      {{0x08, 0xFB, 0xFA, 0x00}, "Heartbeat.timestamp"},              // 250 in 3 bytes
      {{0x08, 0xFC, 0xFF, 0xFF, 0x00, 0x00}, "Heartbeat.timestamp"},  // 65535 in 5
      {{0x08, 0xFD, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0}, "Heartbeat.timestamp"},
      {{0xFB, 0x08, 0x00, 0x00}, "Frame tag"},
      {{0x04, 0xFB, 0xF7, 0x00, 0x00, 0x00, 0x00, 0x00}, "OpenStream.stream_id"},
      {{0x04, 0x02, 0xFB, 0x05, 0x00, 0x00, 0x00, 0x00}, "OpenStream.protocol"},
  };
  for (const auto& [payload, field] : overlong) {
    Frame frame;
    std::string error;
    EXPECT_FALSE(DecodeControlPayload(payload.data(), payload.size(), frame, error)) << field;
    EXPECT_NE(error.find(field), std::string::npos) << error;
    EXPECT_NE(error.find("overlong"), std::string::npos) << error;
  }
  // The shortest forms at each boundary still decode.
  for (const Bytes& payload :
       {Bytes{0x08, 0xFB, 0xFB, 0x00}, Bytes{0x08, 0xFC, 0x00, 0x00, 0x01, 0x00},
        Bytes{0x08, 0xFD, 0, 0, 0, 0, 1, 0, 0, 0}}) {
    Frame frame;
    std::string error;
    EXPECT_TRUE(DecodeControlPayload(payload.data(), payload.size(), frame, error)) << error;
  }
}

TEST(FerroCodec, IncrementalDecodingByteByByte) {
  const auto frames = EveryVariant();
  Bytes stream;
  for (const auto& f : frames) {
    Bytes one = Encode(f);
    stream.insert(stream.end(), one.begin(), one.end());
  }
  FrameDecoder decoder;
  std::vector<Frame> got;
  // Uneven chunk sizes: 1, 2, 3, ... bytes.
  std::size_t pos = 0;
  for (std::size_t chunk = 1; pos < stream.size(); ++chunk) {
    const std::size_t n = std::min(chunk % 97 + 1, stream.size() - pos);
    decoder.Feed(stream.data() + pos, n);
    pos += n;
    Frame f;
    DecodeStatus s;
    while ((s = decoder.Next(f)) == DecodeStatus::kFrame) got.push_back(f);
    ASSERT_EQ(s, DecodeStatus::kNeedMore) << decoder.error();
  }
  EXPECT_EQ(decoder.buffered(), 0u);
  ASSERT_EQ(got.size(), frames.size());
  for (std::size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i], frames[i]) << i;
}

TEST(FerroCodec, PartialInputNeedsMore) {
  const Bytes bytes = Encode(Handshake{"secret", "my-app", 1, 1, {"basic"}});
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    Frame f;
    DecodeResult r = DecodeFrame(bytes.data(), n, f);
    EXPECT_EQ(r.status, DecodeStatus::kNeedMore) << n;
  }
}

TEST(FerroCodec, ControlEncodedDataDecodes) {
  // Frame tag 6 inside a control frame: stream 3, 2 bytes "hi", EOS true.
  Frame f;
  DecodeResult r = Decode(Control({0x06, 0x03, 0x02, 'h', 'i', 0x01}), f);
  ASSERT_EQ(r.status, DecodeStatus::kFrame) << r.error;
  EXPECT_EQ(f, Frame(Data{3, Text("hi"), true}));
}

TEST(FerroCodec, OuterFramingErrors) {
  EXPECT_NE(DecodeError(FromHex("00000000")).find("length 0"), std::string::npos);
  EXPECT_NE(DecodeError(FromHex("0100000100")).find("exceeds"), std::string::npos);
  EXPECT_NE(DecodeError(FromHex("0000000102")).find("unknown frame type 2"), std::string::npos);
  EXPECT_NE(DecodeError(FromHex("00000005010000000")).find("shorter"), std::string::npos);
  // A custom, smaller limit.
  const Bytes big = Encode(Data{1, Bytes(100, 1), false});
  EXPECT_NE(DecodeError(big, 64).find("exceeds the limit 64"), std::string::npos);
  // Oversize length is refused from the first 4 bytes, before the frame arrives.
  Frame f;
  const Bytes header = FromHex("01000001");
  EXPECT_EQ(DecodeFrame(header.data(), header.size(), f).status, DecodeStatus::kError);
}

TEST(FerroCodec, MalformedBincodeIsRejectedWithTheField) {
  struct Case {
    const char* why;
    Bytes payload;
    const char* field;
  };
  const std::vector<Case> cases = {
      {"unknown frame tag", {0x0D}, "Frame tag"},
      {"frame tag as 64-bit varint", {0xFD, 0, 0, 0, 0, 0, 0, 0, 0}, "Frame tag"},
      {"empty payload", {}, "Frame tag"},
      {"option tag 2", {0x00, 0x01, 't', 0x02}, "Handshake.tunnel_id"},
      {"bool 2", {0x06, 0x01, 0x00, 0x02}, "Data.end_of_stream"},
      {"invalid UTF-8", {0x00, 0x02, 0xC3, 0x28, 0x00, 1, 1, 0}, "Handshake.token"},
      {"overlong UTF-8", {0x00, 0x02, 0xC0, 0x80, 0x00, 1, 1, 0}, "Handshake.token"},
      {"surrogate in UTF-8", {0x00, 0x03, 0xED, 0xA0, 0x80, 0x00, 1, 1, 0}, "Handshake.token"},
      {"string longer than the frame", {0x00, 0x10, 'a'}, "Handshake.token"},
      {"uuid of 15 bytes", {0x01, 0x0F}, "HandshakeAck.session_id"},
      {"unknown HandshakeStatus",
       {0x01, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x06, 0, 0},
       "HandshakeAck.status"},
      {"unknown Protocol", {0x04, 0x02, 0x07, 0x00, 0x00, 0x00}, "OpenStream.protocol"},
      {"unknown StreamPriority", {0x04, 0x02, 0x00, 0x00, 0x00, 0x04}, "OpenStream.priority"},
      {"unknown CloseReason", {0x07, 0x02, 0x05}, "CloseStream.reason"},
      {"unknown StreamStatus", {0x05, 0x02, 0x03}, "StreamAck.status"},
      {"unknown RegisterStatus", {0x03, 0x00, 0x04}, "RegisterAck.status"},
      {"unknown ErrorCode", {0x0A, 0x00, 0x07, 0x00}, "Error.code"},
      {"stream id wider than u32",
       {0x07, 0xFD, 0, 0, 0, 0, 1, 0, 0, 0, 0},
       "CloseStream.stream_id"},
      {"truncated varint", {0x08, 0xFC, 0x01}, "Heartbeat.timestamp"},
      {"u128 varint", {0x08, 0xFE}, "Heartbeat.timestamp"},
      {"trailing bytes", {0x09, 0x05, 0x00}, "trailing"},
      {"header count beyond the frame", {0x04, 0x02, 0x00, 0x50}, "OpenStream.headers"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.why);
    std::string error = DecodeError(Control(c.payload));
    EXPECT_NE(error.find(c.field), std::string::npos) << error;
  }
}

Bytes HandshakeWith(const std::string& token, std::size_t caps, std::size_t cap_size) {
  Handshake h{token, std::nullopt, 1, 1, {}};
  for (std::size_t i = 0; i < caps; ++i) h.capabilities.push_back(std::string(cap_size, 'c'));
  // Encode by hand: EncodeFrame refuses frames beyond the limits.
  Bytes payload;
  bincode::Writer w(payload);
  w.Varint(0);
  w.Str(h.token);
  w.OptionTag(false);
  w.U8(1);
  w.U8(1);
  w.Varint(h.capabilities.size());
  for (const auto& c : h.capabilities) w.Str(c);
  return Control(payload);
}

TEST(FerroCodec, FieldLimits) {
  Frame f;
  EXPECT_EQ(Decode(HandshakeWith(std::string(256, 't'), 32, 64), f).status, DecodeStatus::kFrame);
  EXPECT_NE(DecodeError(HandshakeWith(std::string(257, 't'), 0, 0)).find("Handshake.token"),
            std::string::npos);
  EXPECT_NE(DecodeError(HandshakeWith("t", 33, 1)).find("Handshake.capabilities"),
            std::string::npos);
  EXPECT_NE(DecodeError(HandshakeWith("t", 1, 65)).find("Handshake.capabilities"),
            std::string::npos);

  auto refused = [](const Frame& frame) {
    Bytes out;
    std::string error;
    EXPECT_FALSE(EncodeFrame(frame, out, error)) << FrameName(frame);
    EXPECT_TRUE(out.empty());
    return error;
  };
  OpenStream open;
  open.headers.assign(129, {"a", "b"});
  EXPECT_NE(refused(open).find("OpenStream.headers"), std::string::npos);
  open.headers.assign(1, {std::string(8193, 'h'), "b"});
  EXPECT_NE(refused(open).find("OpenStream.headers"), std::string::npos);
  Register reg{"svc", Protocol::kHttp, {}};
  for (int i = 0; i < 65; ++i) reg.metadata.emplace_back(std::to_string(i), "v");
  EXPECT_NE(refused(reg).find("Register.metadata"), std::string::npos);
  reg.metadata.assign(1, {"k", std::string(1025, 'v')});
  EXPECT_NE(refused(reg).find("Register.metadata"), std::string::npos);
  EXPECT_NE(refused(Error{std::nullopt, ErrorCode::kTimeout, std::string(4097, 'm')})
                .find("Error.message"),
            std::string::npos);
  EXPECT_NE(refused(RegisterAck{std::string(2049, 'u'), RegisterStatus::kSuccess})
                .find("RegisterAck.public_url"),
            std::string::npos);
  EXPECT_NE(refused(Handshake{"t", std::string(257, 'i'), 1, 1, {}}).find("Handshake.tunnel_id"),
            std::string::npos);
  EXPECT_NE(refused(Handshake{"\xff", std::nullopt, 1, 1, {}}).find("UTF-8"), std::string::npos);
  EXPECT_NE(refused(PluginData{std::string(257, 'p'), {}}).find("PluginData.plugin_id"),
            std::string::npos);

  // Data beyond the frame limit is refused by the encoder.
  Bytes out;
  std::string error;
  EXPECT_FALSE(EncodeFrame(Data{1, Bytes(100, 0), false}, out, error, 64));
  EXPECT_NE(error.find("exceeds"), std::string::npos);
}

TEST(FerroCodec, DataHeaderMatchesEncodeFrame) {
  const Bytes payload = Text("GET / HTTP/1.1\r\n");
  const auto header = EncodeDataHeader(2, payload.size());
  Bytes joined(header.begin(), header.end());
  joined.insert(joined.end(), payload.begin(), payload.end());
  EXPECT_EQ(joined, Encode(Data{2, payload, false}));
}

TEST(FerroCodec, UuidToString) {
  Uuid u{0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
         0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
  EXPECT_EQ(UuidToString(u), "00112233-4455-6677-8899-aabbccddeeff");
}

TEST(FerroCodec, FailedDecoderStaysFailed) {
  FrameDecoder decoder;
  const Bytes bad = FromHex("00000000");
  decoder.Feed(bad.data(), bad.size());
  Frame f;
  EXPECT_EQ(decoder.Next(f), DecodeStatus::kError);
  const Bytes good = Encode(Heartbeat{1});
  decoder.Feed(good.data(), good.size());
  EXPECT_EQ(decoder.Next(f), DecodeStatus::kError);
}

// The kernel path reads a data frame's header, takes the buffered part of the payload, and
// moves the rest itself; the decoder then goes on with the next frame.
TEST(FerroCodec, DataFrameStartAndDiscard) {
  FrameDecoder decoder;
  Bytes payload(100000);
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<std::uint8_t>(i * 7);
  const auto header = EncodeDataHeader(42, payload.size());
  Bytes wire(header.begin(), header.end());
  wire.insert(wire.end(), payload.begin(), payload.end());
  const Bytes next = Encode(Heartbeat{99});
  wire.insert(wire.end(), next.begin(), next.end());

  decoder.Feed(wire.data(), 9);
  EXPECT_FALSE(decoder.PeekDataFrame());  // the header is not complete yet
  // Written in place (Prepare/Commit) rather than fed.
  auto room = decoder.Prepare(4000);
  std::memcpy(room.data(), wire.data() + 9, 1000);
  decoder.Commit(1000);
  EXPECT_EQ(decoder.buffered(), 1009u);
  const auto start = decoder.PeekDataFrame();
  ASSERT_TRUE(start);
  EXPECT_EQ(start->stream_id, 42u);
  EXPECT_EQ(start->payload_size, payload.size());
  EXPECT_EQ(start->payload_buffered, 999u);
  EXPECT_EQ(0, std::memcmp(start->payload, payload.data(), 999));
  decoder.Discard(kDataFrameHeaderSize + start->payload_buffered);
  EXPECT_EQ(decoder.buffered(), 0u);
  // The caller moved the rest of the payload; what follows decodes normally.
  const std::size_t after = header.size() + payload.size();
  decoder.Feed(wire.data() + after, wire.size() - after);
  EXPECT_FALSE(decoder.PeekDataFrame());  // a control frame
  Frame f;
  ASSERT_EQ(decoder.Next(f), DecodeStatus::kFrame);
  ASSERT_TRUE(std::holds_alternative<Heartbeat>(f));
  EXPECT_EQ(std::get<Heartbeat>(f).timestamp, 99u);
}

TEST(FerroCodec, DataFrameStartIgnoresInvalidHeaders) {
  FrameDecoder decoder(1024);
  // Length beyond the decoder's limit: no start, and Next names the problem.
  const Bytes oversize = FromHex(
      "00010000"
      "01"
      "00000001"
      "00");
  decoder.Feed(oversize.data(), oversize.size());
  EXPECT_FALSE(decoder.PeekDataFrame());
  Frame f;
  EXPECT_EQ(decoder.Next(f), DecodeStatus::kError);
  FrameDecoder short_frame;
  const Bytes too_short = FromHex(
      "00000005"
      "01"
      "00000001"
      "00");
  short_frame.Feed(too_short.data(), too_short.size());
  EXPECT_FALSE(short_frame.PeekDataFrame());
  EXPECT_EQ(short_frame.Next(f), DecodeStatus::kError);
}

}  // namespace
}  // namespace tunnelkit::ferro
