// Pure codecs of the cloudflare backend: stream preamble, ConnectRequest/ConnectResponse,
// UUID and base64.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "tunnelkit/cloudflare/wire/codec/connect_metadata.hpp"
#include "tunnelkit/cloudflare/wire/codec/encoding.hpp"
#include "tunnelkit/cloudflare/wire/codec/stream_preamble.hpp"

namespace tunnelkit::cloudflare {
namespace {

std::vector<std::uint8_t> Bytes(std::initializer_list<int> values) {
  std::vector<std::uint8_t> out;
  for (int v : values) out.push_back(static_cast<std::uint8_t>(v));
  return out;
}

TEST(CloudflarePreamble, DataStream) {
  auto bytes = Bytes({0x0A, 0x36, 0xCD, 0x12, 0xA1, 0x3E, '0', '1', 0xff});
  auto result = DecodePreamble(bytes);
  ASSERT_EQ(result.status, DecodeStatus::kOk);
  EXPECT_EQ(result.kind, StreamKind::kData);
  EXPECT_EQ(result.consumed, 8u);
  EXPECT_EQ(result.version[0], '0');
  EXPECT_EQ(result.version[1], '1');
  auto encoded = EncodeDataPreamble();
  EXPECT_EQ(std::vector<std::uint8_t>(encoded.begin(), encoded.end()),
            std::vector<std::uint8_t>(bytes.begin(), bytes.begin() + 8));
}

TEST(CloudflarePreamble, RpcStreamHasNoVersion) {
  auto bytes = Bytes({0x52, 0xBB, 0x82, 0x5C, 0xDB, 0x65, 0x00});
  auto result = DecodePreamble(bytes);
  ASSERT_EQ(result.status, DecodeStatus::kOk);
  EXPECT_EQ(result.kind, StreamKind::kRpc);
  EXPECT_EQ(result.consumed, 6u);
}

TEST(CloudflarePreamble, NeedsMoreUntilComplete) {
  auto full = EncodeDataPreamble();
  for (std::size_t n = 0; n < full.size(); ++n) {
    auto result = DecodePreamble(std::span<const std::uint8_t>(full.data(), n));
    EXPECT_EQ(result.status, DecodeStatus::kNeedMore) << n;
  }
}

TEST(CloudflarePreamble, RejectsUnknownSignatureEarly) {
  auto result = DecodePreamble(Bytes({0x0A, 0x36, 0x00}));
  ASSERT_EQ(result.status, DecodeStatus::kError);
  EXPECT_NE(result.error.find("0a3600"), std::string::npos) << result.error;
  EXPECT_EQ(DecodePreamble(Bytes({'G', 'E', 'T', ' '})).status, DecodeStatus::kError);
}

ConnectRequest SampleRequest() {
  ConnectRequest request;
  request.dest = "https://quiet-river-moon-glow.trycloudflare.com/path?q=1";
  request.type = ConnectionType::kHttp;
  request.metadata = {{"HttpMethod", "GET"},
                      {"HttpHost", "quiet-river-moon-glow.trycloudflare.com"},
                      {"HttpHeader:Accept", "*/*"},
                      {"HttpHeader:Accept", "text/html"}};
  return request;
}

TEST(CloudflareConnectRequest, RoundTripWithTrailingBody) {
  auto request = SampleRequest();
  auto bytes = EncodeConnectRequest(request);
  ASSERT_EQ(bytes.size() % 8, 0u);
  std::size_t framed = bytes.size();
  bytes.insert(bytes.end(), {'b', 'o', 'd', 'y'});
  auto result = DecodeConnectRequest(bytes);
  ASSERT_EQ(result.status, DecodeStatus::kOk) << result.error;
  EXPECT_EQ(result.consumed, framed);
  EXPECT_EQ(result.message, request);
  ASSERT_NE(FindMetadata(result.message.metadata, "HttpMethod"), nullptr);
  EXPECT_EQ(*FindMetadata(result.message.metadata, "HttpMethod"), "GET");
  EXPECT_EQ(FindMetadata(result.message.metadata, "HttpStatus"), nullptr);
}

TEST(CloudflareConnectRequest, NeedsMoreForEveryPrefix) {
  auto bytes = EncodeConnectRequest(SampleRequest());
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    auto result = DecodeConnectRequest(std::span<const std::uint8_t>(bytes.data(), n));
    ASSERT_EQ(result.status, DecodeStatus::kNeedMore) << n;
    if (n >= 8) {
      EXPECT_EQ(result.needed, bytes.size()) << n;
    }
  }
}

TEST(CloudflareConnectRequest, AllTypes) {
  for (auto type : {ConnectionType::kHttp, ConnectionType::kWebsocket, ConnectionType::kTcp}) {
    ConnectRequest request{"127.0.0.1:22", type, {}};
    auto result = DecodeConnectRequest(EncodeConnectRequest(request));
    ASSERT_EQ(result.status, DecodeStatus::kOk);
    EXPECT_EQ(result.message.type, type);
  }
}

TEST(CloudflareConnectRequest, RejectsUnknownType) {
  auto bytes = EncodeConnectRequest(SampleRequest());
  bytes[16] = 7;  // data word of the root struct: the type field
  auto result = DecodeConnectRequest(bytes);
  ASSERT_EQ(result.status, DecodeStatus::kError);
  EXPECT_NE(result.error.find("unknown connection type 7"), std::string::npos) << result.error;
}

TEST(CloudflareConnectRequest, LimitsEntries) {
  auto request = SampleRequest();
  MetadataLimits limits;
  limits.max_entries = 3;
  auto result = DecodeConnectRequest(EncodeConnectRequest(request), limits);
  ASSERT_EQ(result.status, DecodeStatus::kError);
  EXPECT_NE(result.error.find("4 entries (limit 3)"), std::string::npos) << result.error;
}

TEST(CloudflareConnectRequest, LimitsMessageSizeBeforeBodyArrives) {
  ConnectRequest request;
  request.dest = std::string(4000, 'x');
  auto bytes = EncodeConnectRequest(request);
  MetadataLimits limits;
  limits.max_message_bytes = 1024;
  // Only the segment table: the size is already known to be too large.
  auto result = DecodeConnectRequest(std::span<const std::uint8_t>(bytes.data(), 8), limits);
  ASSERT_EQ(result.status, DecodeStatus::kError);
  EXPECT_NE(result.error.find("limit 1024"), std::string::npos) << result.error;
}

TEST(CloudflareConnectRequest, LimitsStrings) {
  MetadataLimits limits;
  limits.max_dest_bytes = 10;
  auto result = DecodeConnectRequest(EncodeConnectRequest(SampleRequest()), limits);
  ASSERT_EQ(result.status, DecodeStatus::kError);
  EXPECT_NE(result.error.find("dest"), std::string::npos);
  limits = {};
  limits.max_value_bytes = 4;
  result = DecodeConnectRequest(EncodeConnectRequest(SampleRequest()), limits);
  ASSERT_EQ(result.status, DecodeStatus::kError);
  EXPECT_NE(result.error.find("metadata value"), std::string::npos);
}

TEST(CloudflareConnectRequest, RejectsTooManySegments) {
  auto bytes = Bytes({0xff, 0x00, 0x00, 0x00});
  auto result = DecodeConnectRequest(bytes);
  ASSERT_EQ(result.status, DecodeStatus::kError);
  EXPECT_NE(result.error.find("256 segments"), std::string::npos) << result.error;
}

TEST(CloudflareConnectRequest, RejectsBadPointers) {
  auto bytes = EncodeConnectRequest(SampleRequest());
  // Root pointer word: point the struct far outside the segment.
  bytes[8] = 0xfc;
  bytes[9] = 0xff;
  bytes[10] = 0xff;
  bytes[11] = 0x0f;
  auto result = DecodeConnectRequest(bytes);
  ASSERT_EQ(result.status, DecodeStatus::kError);
  EXPECT_NE(result.error.find("malformed message"), std::string::npos) << result.error;
}

TEST(CloudflareConnectRequest, RejectsTextWithoutNul) {
  ConnectRequest request{"abcdefg", ConnectionType::kHttp, {}};
  auto bytes = EncodeConnectRequest(request);
  // The dest text sits right after the root struct (framing 8 + pointer 8 + data 8 + 2 ptrs 16).
  ASSERT_EQ(bytes[40], 'a');
  bytes[47] = 'X';  // overwrite the NUL terminator
  auto result = DecodeConnectRequest(bytes);
  ASSERT_EQ(result.status, DecodeStatus::kError);
}

TEST(CloudflareConnectResponse, RoundTrip) {
  ConnectResponse response{"", {{"HttpStatus", "200"}, {"HttpHeader:Content-Type", "text/plain"}}};
  auto result = DecodeConnectResponse(EncodeConnectResponse(response));
  ASSERT_EQ(result.status, DecodeStatus::kOk) << result.error;
  EXPECT_EQ(result.message, response);
  ConnectResponse failure{"Unable to reach the origin service", {}};
  auto failed = DecodeConnectResponse(EncodeConnectResponse(failure));
  ASSERT_EQ(failed.status, DecodeStatus::kOk);
  EXPECT_EQ(failed.message.error, failure.error);
}

TEST(CloudflareEncoding, Uuid) {
  auto id = ParseUuid("0F1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0");
  ASSERT_TRUE(id);
  EXPECT_EQ((*id)[0], 0x0f);
  EXPECT_EQ((*id)[15], 0xf0);
  EXPECT_EQ(FormatUuid(*id), "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0");
  EXPECT_FALSE(ParseUuid(""));
  EXPECT_FALSE(ParseUuid("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f"));
  EXPECT_FALSE(ParseUuid("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1fg"));
  EXPECT_FALSE(ParseUuid("0f1e2d3c4b5a-6978-8796-a5b4c3d2e1f0a"));
  auto random = RandomUuid();
  EXPECT_EQ(random[6] >> 4, 4);
  EXPECT_NE(FormatUuid(random), FormatUuid(RandomUuid()));
}

TEST(CloudflareEncoding, Base64) {
  std::vector<std::uint8_t> secret(32);
  for (std::size_t i = 0; i < secret.size(); ++i) secret[i] = static_cast<std::uint8_t>(i * 7);
  std::string text = EncodeBase64(secret);
  EXPECT_EQ(text.size(), 44u);
  EXPECT_EQ(text.back(), '=');
  auto decoded = DecodeBase64(text);
  ASSERT_TRUE(decoded);
  EXPECT_EQ(*decoded, secret);
  EXPECT_EQ(*DecodeBase64("aGk="), (std::vector<std::uint8_t>{'h', 'i'}));
  EXPECT_EQ(*DecodeBase64("aGkh"), (std::vector<std::uint8_t>{'h', 'i', '!'}));
  EXPECT_EQ(DecodeBase64("")->size(), 0u);
  EXPECT_FALSE(DecodeBase64("aGk"));     // no padding
  EXPECT_FALSE(DecodeBase64("aG=k"));    // padding in the middle
  EXPECT_FALSE(DecodeBase64("aGl="));    // non-canonical trailing bits
  EXPECT_FALSE(DecodeBase64("a-k_"));    // URL alphabet
  EXPECT_FALSE(DecodeBase64(text, 16));  // over the limit
}

}  // namespace
}  // namespace tunnelkit::cloudflare
