// fuzz-links: tunnelkit_zlayer_core
// fuzz-sources: plugins/zlayer/src/codec/*.cpp
// fuzz-libs: nlohmann_json::nlohmann_json fuzz_framework_text
// Decodes arbitrary bytes as frames of a shared data WebSocket (codec/mux_codec.hpp), as the
// multiplexer's reader walks its input; every decoded frame must re-encode to the same bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "codec/mux_codec.hpp"

using namespace tunnelkit;
using namespace tunnelkit::zlayer::codec;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  ZlayerMuxCodec codec;
  std::span<const std::uint8_t> bytes(data, size);
  while (!bytes.empty()) {
    const auto decoded = codec.Decode(bytes);
    if (decoded.status != mux::DecodeResult::Status::kFrame) {
      if (decoded.status == mux::DecodeResult::Status::kError && decoded.error.empty()) {
        std::abort();  // an error always says why
      }
      break;
    }
    if (decoded.consumed == 0 || decoded.consumed > bytes.size()) std::abort();
    if (decoded.consumed > kMuxMaxFrame) std::abort();
    std::vector<std::uint8_t> encoded;
    if (!codec.Encode(decoded.frame, encoded).empty()) std::abort();
    if (encoded.size() != decoded.consumed) std::abort();
    for (std::size_t i = 0; i < encoded.size(); ++i) {
      if (encoded[i] != bytes[i]) std::abort();
    }
    bytes = bytes.subspan(decoded.consumed);
  }
  return 0;
}
