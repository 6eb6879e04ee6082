// Golden vectors (specs/zlayer.md 2.5 and tests/data/vectors/zlayer.json) in both directions,
// malformed inputs, limits and the encode-side refusal of oversize strings.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "codec/codec.hpp"
#include "codec/extension.hpp"
#include "codec/utf8.hpp"
#include "hex.hpp"

namespace tunnelkit::zlayer::codec {
namespace {

using test::FromHex;

Uuid U(const char* text) {
  return *Uuid::Parse(text);
}

nlohmann::json LoadVectors() {
  std::ifstream in(std::string(TUNNELKIT_TEST_DATA_DIR) + "/vectors/zlayer.json");
  return nlohmann::json::parse(in);
}

// The messages the vector file describes, in its order.
std::vector<Message> ExpectedVectorMessages() {
  return {
      Auth{"tun_0123456789abcdef0123456789abcdef", U("00112233-4455-6677-8899-aabbccddeeff"), ""},
      AuthOk{U("11111111-2222-3333-4444-555555555555"), ""},
      AuthFail{"Token already in use"},
      Register{"ssh", ServiceProtocol::kTcp, 22, 2222},
      Register{"dns", ServiceProtocol::kUdp, 53, 0},
      Heartbeat{1700000000000},
      HeartbeatAck{1700000000000},
      Connect{U("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"), U("12345678-9abc-def0-1234-56789abcdef0"),
              "203.0.113.7:51234"},
      ConnectAck{U("12345678-9abc-def0-1234-56789abcdef0")},
  };
}

TEST(ZlayerCodec, VectorFileDecodesToExpectedMessages) {
  const auto vectors = LoadVectors();
  const auto expected = ExpectedVectorMessages();
  ASSERT_EQ(vectors["messages"].size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const auto& v = vectors["messages"][i];
    const auto bytes = FromHex(v["hex"].get<std::string>());
    const auto decoded = Decode(bytes);
    ASSERT_TRUE(decoded.ok) << v["name"] << ": " << decoded.error;
    EXPECT_EQ(decoded.consumed, bytes.size()) << v["name"];
    EXPECT_EQ(decoded.message, expected[i]) << v["name"];
  }
}

TEST(ZlayerCodec, VectorFileEncodesByteForByte) {
  const auto vectors = LoadVectors();
  const auto expected = ExpectedVectorMessages();
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const auto& v = vectors["messages"][i];
    const auto encoded = Encode(expected[i]);
    ASSERT_TRUE(encoded.ok) << encoded.error;
    EXPECT_EQ(encoded.bytes, FromHex(v["hex"].get<std::string>())) << v["name"];
  }
}

TEST(ZlayerCodec, VectorFileRejects) {
  const auto vectors = LoadVectors();
  ASSERT_GE(vectors["must_reject"].size(), 7u);
  for (const auto& v : vectors["must_reject"]) {
    const auto decoded = Decode(FromHex(v["hex"].get<std::string>()));
    EXPECT_FALSE(decoded.ok) << v["why"];
    EXPECT_FALSE(decoded.error.empty()) << v["why"];
  }
}

TEST(ZlayerCodec, SpecHexExamples) {
  // specs/zlayer.md 2.5, spaced as printed there.
  struct Case {
    const char* hex;
    Message message;
  };
  const std::vector<Case> cases = {
      {"02 00 00 00 10 11 11 11 11 22 22 33 33 44 44 55 55 55 55 55 55",
       AuthOk{U("11111111-2222-3333-4444-555555555555"), ""}},
      {"10 00 00 00 09 03 73 73 68 00 00 16 08 ae",
       Register{"ssh", ServiceProtocol::kTcp, 22, 2222}},
      {"30 00 00 00 08 00 00 01 8b cf e5 68 00", Heartbeat{1700000000000}},
      {"21 00 00 00 10 12 34 56 78 9a bc de f0 12 34 56 78 9a bc de f0",
       ConnectAck{U("12345678-9abc-def0-1234-56789abcdef0")}},
  };
  for (const auto& c : cases) {
    const auto bytes = FromHex(c.hex);
    const auto decoded = Decode(bytes);
    ASSERT_TRUE(decoded.ok) << c.hex << ": " << decoded.error;
    EXPECT_EQ(decoded.message, c.message);
    EXPECT_EQ(Encode(c.message).bytes, bytes);
  }
}

TEST(ZlayerCodec, ErrorMessagesNameTheProblem) {
  EXPECT_NE(Decode(FromHex("")).error.find("5-byte header"), std::string::npos);
  EXPECT_NE(Decode(FromHex("ff00000000")).error.find("unknown message type 0xff"),
            std::string::npos);
  EXPECT_NE(Decode(FromHex("01ffffffff")).error.find("exceeds the limit of 65531"),
            std::string::npos);
  EXPECT_NE(Decode(FromHex("010000002000")).error.find("incomplete"), std::string::npos);
  // Register with protocol byte 0xff.
  const auto bad_protocol = Decode(FromHex("100000000903737368ff00161608"));
  ASSERT_FALSE(bad_protocol.ok);
  EXPECT_NE(bad_protocol.error.find("Register.protocol"), std::string::npos) << bad_protocol.error;
  // Auth whose token length runs past the payload.
  const auto short_token = Decode(FromHex("0100000004 0010 6162"));
  ASSERT_FALSE(short_token.ok);
  EXPECT_NE(short_token.error.find("Auth.token"), std::string::npos) << short_token.error;
  // AuthOk missing its UUID bytes.
  EXPECT_NE(Decode(FromHex("0200000002 1111")).error.find("AuthOk.tunnel_id"), std::string::npos);
}

TEST(ZlayerCodec, RejectsInvalidUtf8) {
  // AuthFail reason "\xff\xfe".
  const auto decoded = Decode(FromHex("0300000004 0002 fffe"));
  ASSERT_FALSE(decoded.ok);
  EXPECT_NE(decoded.error.find("UTF-8"), std::string::npos);
  EXPECT_FALSE(Encode(AuthFail{"\xc0\x80"}).ok);  // overlong NUL
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_TRUE(IsValidUtf8("h\xc3\xa9llo \xf0\x9f\x98\x80"));
}

TEST(ZlayerCodec, HeartbeatIsThirteenBytes) {
  EXPECT_EQ(Encode(Heartbeat{42}).bytes.size(), 13u);
  EXPECT_EQ(Encode(HeartbeatAck{42}).bytes.size(), 13u);
}

TEST(ZlayerCodec, TwoMessagesInOneBufferDecodeSequentially) {
  auto bytes = Encode(Heartbeat{1}).bytes;
  const auto second = Encode(AuthFail{"no"}).bytes;
  bytes.insert(bytes.end(), second.begin(), second.end());
  const auto first = Decode(bytes);
  ASSERT_TRUE(first.ok);
  EXPECT_EQ(first.message, Message{Heartbeat{1}});
  const auto next = Decode(std::span(bytes).subspan(first.consumed));
  ASSERT_TRUE(next.ok);
  EXPECT_EQ(next.message, Message{AuthFail{"no"}});
  EXPECT_EQ(first.consumed + next.consumed, bytes.size());
}

TEST(ZlayerCodec, EveryTypeRoundTrips) {
  std::array<std::uint8_t, 16> secret{};
  for (std::size_t i = 0; i < secret.size(); ++i) secret[i] = static_cast<std::uint8_t>(i * 7);
  const std::vector<Message> all = {
      Auth{"tok", U("00112233-4455-6677-8899-aabbccddeeff"), "TKDP\x01"},
      AuthOk{U("11111111-2222-3333-4444-555555555555"), "x"},
      AuthFail{"nope"},
      Register{"web_1-a", ServiceProtocol::kUdp, 65535, 1},
      RegisterOk{U("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"), EncodeRegisterExtra({30001})},
      RegisterFail{"Registry error: no ports available"},
      Connect{U("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"), U("12345678-9abc-def0-1234-56789abcdef0"),
              "[::1]:5000"},
      ConnectAck{U("12345678-9abc-def0-1234-56789abcdef0")},
      ConnectFail{U("12345678-9abc-def0-1234-56789abcdef0"), "connection refused"},
      Heartbeat{0xffffffffffffffffull},
      HeartbeatAck{0},
      Unregister{U("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee")},
      Disconnect{"server shutting down"},
      DataAttach{U("11111111-2222-3333-4444-555555555555"),
                 U("12345678-9abc-def0-1234-56789abcdef0"), secret},
  };
  for (const auto& m : all) {
    const auto encoded = Encode(m);
    ASSERT_TRUE(encoded.ok) << encoded.error;
    EXPECT_EQ(encoded.bytes[0], static_cast<std::uint8_t>(TypeOf(m)));
    const auto decoded = Decode(encoded.bytes);
    ASSERT_TRUE(decoded.ok) << MessageTypeName(TypeOf(m)) << ": " << decoded.error;
    EXPECT_EQ(decoded.message, m) << MessageTypeName(TypeOf(m));
  }
}

TEST(ZlayerCodec, TrailingPayloadBytesAreTolerated) {
  // Upstream decoders check only the minimum length; a Heartbeat with 2 extra payload bytes.
  const auto decoded = Decode(FromHex("300000000a 0000018bcfe56800 beef"));
  ASSERT_TRUE(decoded.ok) << decoded.error;
  EXPECT_EQ(decoded.message, Message{Heartbeat{1700000000000}});
  EXPECT_EQ(decoded.consumed, 15u);
}

TEST(ZlayerCodec, EncodeRefusesStringsTooLongForTheirLengthField) {
  const auto name = Encode(Register{std::string(256, 'a'), ServiceProtocol::kTcp, 1, 0});
  EXPECT_FALSE(name.ok);
  EXPECT_NE(name.error.find("Register.name"), std::string::npos) << name.error;
  EXPECT_TRUE(name.bytes.empty());
  EXPECT_TRUE(Encode(Register{std::string(255, 'a'), ServiceProtocol::kTcp, 1, 0}).ok);

  const auto reason = Encode(AuthFail{std::string(65536, 'r')});
  EXPECT_FALSE(reason.ok);
  EXPECT_NE(reason.error.find("AuthFail.reason"), std::string::npos) << reason.error;
}

TEST(ZlayerCodec, EncodeRefusesPayloadAboveLimit) {
  // 65533 bytes of reason fit str16 but the payload (65535) exceeds 65531.
  const auto encoded = Encode(Disconnect{std::string(65533, 'r')});
  EXPECT_FALSE(encoded.ok);
  EXPECT_NE(encoded.error.find("exceeds the limit"), std::string::npos) << encoded.error;
  const auto largest = Encode(Disconnect{std::string(kMaxPayloadSize - 2, 'r')});
  ASSERT_TRUE(largest.ok) << largest.error;
  EXPECT_EQ(largest.bytes.size(), kMaxMessageSize);
  EXPECT_TRUE(Decode(largest.bytes).ok);
}

TEST(ZlayerCodec, UuidText) {
  const auto uuid = Uuid::Parse("12345678-9ABC-def0-1234-56789abcdef0");
  ASSERT_TRUE(uuid);
  EXPECT_EQ(uuid->ToString(), "12345678-9abc-def0-1234-56789abcdef0");
  EXPECT_FALSE(Uuid::Parse("12345678-9abc-def0-1234-56789abcdef"));
  EXPECT_FALSE(Uuid::Parse("123456789-abc-def0-1234-56789abcdef0"));
  EXPECT_FALSE(Uuid::Parse("12345678-9abc-def0-1234-56789abcdefg"));
  EXPECT_TRUE(Uuid{}.IsNil());
}

TEST(ZlayerExtension, HellosRoundTripAndIgnoreForeignTrailers) {
  EXPECT_EQ(DecodeAgentHello(EncodeAgentHello({}))->version, kExtensionVersion);
  EXPECT_FALSE(DecodeAgentHello(""));
  EXPECT_FALSE(DecodeAgentHello("XXXX\x01"));
  ServerHello hello;
  hello.data_secret[3] = 9;
  const auto decoded = DecodeServerHello(EncodeServerHello(hello));
  ASSERT_TRUE(decoded);
  EXPECT_EQ(decoded->data_secret, hello.data_secret);
  EXPECT_FALSE(DecodeServerHello("TKDP\x01short"));
  EXPECT_EQ(DecodeRegisterExtra(EncodeRegisterExtra({30123}))->public_port, 30123);
  EXPECT_FALSE(DecodeRegisterExtra("TKDP\x01"));
}

TEST(ZlayerExtension, DataFrames) {
  const std::vector<std::uint8_t> data = {0, 'h', 'i'};
  const auto frame = DecodeDataFrame(data);
  ASSERT_TRUE(frame.ok);
  EXPECT_EQ(frame.frame.kind, DataFrameKind::kData);
  EXPECT_EQ(frame.frame.payload.size(), 2u);
  EXPECT_TRUE(DecodeDataFrame(std::vector<std::uint8_t>{1}).ok);
  EXPECT_FALSE(DecodeDataFrame(std::vector<std::uint8_t>{1, 2}).ok);
  EXPECT_FALSE(DecodeDataFrame(std::vector<std::uint8_t>{}).ok);
  EXPECT_FALSE(DecodeDataFrame(std::vector<std::uint8_t>{3}).ok);
  std::vector<std::uint8_t> huge(kMaxDataFramePayload + 2, 0);
  EXPECT_FALSE(DecodeDataFrame(huge).ok);
}

}  // namespace
}  // namespace tunnelkit::zlayer::codec
