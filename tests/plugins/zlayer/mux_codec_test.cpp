// The shared data WebSocket's frame codec (codec/mux_codec.hpp) against golden bytes
// (tests/data/vectors/zlayer_mux.json) both ways, its limits and one-line errors, and the
// negotiation trailers of shared data channels next to the ones older peers send.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "codec/extension.hpp"
#include "codec/mux_codec.hpp"
#include "hex.hpp"

namespace tunnelkit::zlayer::codec {
namespace {

using test::FromHex;

std::string AsString(const std::vector<std::uint8_t>& bytes) {
  return {bytes.begin(), bytes.end()};
}

nlohmann::json LoadVectors() {
  std::ifstream in(std::string(TUNNELKIT_TEST_DATA_DIR) + "/vectors/zlayer_mux.json");
  return nlohmann::json::parse(in);
}

mux::FrameKind KindOf(const std::string& name) {
  if (name == "open") return mux::FrameKind::kOpen;
  if (name == "data") return mux::FrameKind::kData;
  if (name == "close") return mux::FrameKind::kClose;
  if (name == "reset") return mux::FrameKind::kReset;
  if (name == "window_update") return mux::FrameKind::kWindowUpdate;
  ADD_FAILURE() << "unknown kind " << name;
  return mux::FrameKind::kControl;
}

TEST(ZlayerMuxCodec, GoldenFramesDecodeAndEncodeByteForByte) {
  const auto vectors = LoadVectors();
  ASSERT_EQ(vectors["frames"].size(), 6u);
  for (const auto& v : vectors["frames"]) {
    const auto bytes = FromHex(v["hex"].get<std::string>());
    const auto payload = FromHex(v.value("payload_hex", std::string()));
    ZlayerMuxCodec codec;
    const auto decoded = codec.Decode(bytes);
    ASSERT_EQ(decoded.status, mux::DecodeResult::Status::kFrame) << v["name"] << decoded.error;
    EXPECT_EQ(decoded.consumed, bytes.size()) << v["name"];
    const auto& frame = decoded.frame;
    EXPECT_EQ(frame.kind, KindOf(v["kind"])) << v["name"];
    EXPECT_EQ(frame.stream_id, v["stream"].get<std::uint32_t>()) << v["name"];
    EXPECT_EQ(std::vector<std::uint8_t>(frame.payload.begin(), frame.payload.end()), payload)
        << v["name"];
    if (v.contains("priority")) {
      EXPECT_EQ(static_cast<int>(frame.priority), v["priority"].get<int>());
    }
    if (v.contains("code")) {
      EXPECT_EQ(frame.code, v["code"].get<std::uint32_t>());
    }
    if (v.contains("credit")) {
      EXPECT_EQ(frame.credit, v["credit"].get<std::uint32_t>());
    }

    // Every prefix is incomplete, never an error.
    for (std::size_t n = 0; n < bytes.size(); ++n) {
      EXPECT_EQ(codec.Decode(std::span(bytes.data(), n)).status,
                mux::DecodeResult::Status::kNeedMore)
          << v["name"] << " prefix " << n;
    }
    std::vector<std::uint8_t> encoded;
    EXPECT_EQ(codec.Encode(frame, encoded), "") << v["name"];
    EXPECT_EQ(encoded, bytes) << v["name"];
  }
}

TEST(ZlayerMuxCodec, FramesFollowEachOtherInOneBuffer) {
  const auto vectors = LoadVectors();
  std::vector<std::uint8_t> all;
  for (const auto& v : vectors["frames"]) {
    const auto bytes = FromHex(v["hex"].get<std::string>());
    all.insert(all.end(), bytes.begin(), bytes.end());
  }
  ZlayerMuxCodec codec;
  std::span<const std::uint8_t> rest(all);
  std::size_t frames = 0;
  while (!rest.empty()) {
    const auto decoded = codec.Decode(rest);
    ASSERT_EQ(decoded.status, mux::DecodeResult::Status::kFrame) << decoded.error;
    rest = rest.subspan(decoded.consumed);
    ++frames;
  }
  EXPECT_EQ(frames, vectors["frames"].size());
}

TEST(ZlayerMuxCodec, MalformedFramesAreOneLineErrors) {
  const auto vectors = LoadVectors();
  ASSERT_GE(vectors["malformed"].size(), 8u);
  for (const auto& v : vectors["malformed"]) {
    ZlayerMuxCodec codec;
    const auto decoded = codec.Decode(FromHex(v["hex"].get<std::string>()));
    ASSERT_EQ(decoded.status, mux::DecodeResult::Status::kError) << v["name"];
    EXPECT_EQ(decoded.error, v["error"].get<std::string>()) << v["name"];
    EXPECT_EQ(decoded.error.find('\n'), std::string::npos);
  }
}

TEST(ZlayerMuxCodec, EncodeRefusesWhatTheWireCannotCarry) {
  ZlayerMuxCodec codec;
  std::vector<std::uint8_t> out;
  std::vector<std::uint8_t> big(kMuxMaxDataPayload + 1, 'x');
  mux::Frame data{mux::FrameKind::kData, 1, mux::Priority::kNormal, 0, 0, big};
  EXPECT_NE(codec.Encode(data, out), "");
  std::vector<std::uint8_t> metadata(kMuxMaxMetadata + 1, 1);
  mux::Frame open{mux::FrameKind::kOpen, 1, mux::Priority::kNormal, 0, 0, metadata};
  EXPECT_NE(codec.Encode(open, out), "");
  mux::Frame zero_id{mux::FrameKind::kClose, 0};
  EXPECT_NE(codec.Encode(zero_id, out), "");
  mux::Frame control{mux::FrameKind::kControl, 0};
  EXPECT_NE(codec.Encode(control, out), "");
  mux::Frame no_credit{mux::FrameKind::kWindowUpdate, 1};
  EXPECT_NE(codec.Encode(no_credit, out), "");
  EXPECT_TRUE(out.empty());

  // A long reason is cut to the limit (a reset always goes out) and decodes again.
  const std::string reason(kMuxMaxReason + 100, 'r');
  mux::Frame reset{mux::FrameKind::kReset,
                   3,
                   mux::Priority::kNormal,
                   0,
                   7,
                   std::span(reinterpret_cast<const std::uint8_t*>(reason.data()), reason.size())};
  ASSERT_EQ(codec.Encode(reset, out), "");
  const auto decoded = codec.Decode(out);
  ASSERT_EQ(decoded.status, mux::DecodeResult::Status::kFrame) << decoded.error;
  EXPECT_EQ(decoded.frame.payload.size(), kMuxMaxReason);
  EXPECT_EQ(decoded.frame.code, 7u);
  EXPECT_EQ(codec.MaxDataPayload(), kMuxMaxDataPayload);
  EXPECT_TRUE(codec.SupportsWindowUpdate());
}

TEST(ZlayerSharedChannelsNegotiation, TrailersByteForByteOldAndNew) {
  const auto trailers = LoadVectors()["trailers"];
  ASSERT_EQ(trailers.size(), 4u);
  const auto agent_v2 = AsString(FromHex(trailers[0]["hex"]));
  const auto agent_shared = AsString(FromHex(trailers[1]["hex"]));
  const auto server_v2 = AsString(FromHex(trailers[2]["hex"]));
  const auto server_shared = AsString(FromHex(trailers[3]["hex"]));

  // Without features, the trailers are exactly what v2 peers sent before shared channels.
  EXPECT_EQ(EncodeAgentHello({}), agent_v2);
  EXPECT_EQ(EncodeAgentHello({kExtensionVersion, kFeatureSharedDataChannels}), agent_shared);
  ServerHello hello;
  for (std::uint8_t i = 0; i < 16; ++i) hello.data_secret[i] = i;
  EXPECT_EQ(EncodeServerHello(hello), server_v2);
  hello.features = kFeatureSharedDataChannels;
  EXPECT_EQ(EncodeServerHello(hello), server_shared);

  // New decoders read both forms.
  EXPECT_EQ(DecodeAgentHello(agent_v2)->features, 0);
  EXPECT_EQ(DecodeAgentHello(agent_shared)->features, kFeatureSharedDataChannels);
  EXPECT_EQ(DecodeAgentHello(agent_shared)->version, kExtensionVersion);
  EXPECT_EQ(DecodeServerHello(server_v2)->features, 0);
  const auto decoded = DecodeServerHello(server_shared);
  ASSERT_TRUE(decoded);
  EXPECT_EQ(decoded->features, kFeatureSharedDataChannels);
  EXPECT_EQ(decoded->data_secret, hello.data_secret);

  // An older peer's decoder stops after its fields: what it reads from the new trailers is
  // the same as from the old ones (the feature byte is past its end).
  EXPECT_EQ(agent_shared.substr(0, agent_v2.size()), agent_v2);
  EXPECT_EQ(server_shared.substr(0, server_v2.size()), server_v2);
  // No trailer at all (upstream ZLayer): no extension.
  EXPECT_FALSE(DecodeAgentHello(""));
  EXPECT_FALSE(DecodeServerHello(""));
}

}  // namespace
}  // namespace tunnelkit::zlayer::codec
