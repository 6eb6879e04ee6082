// fuzz-links: tunnelkit_cloudflare_core CapnProto::capnp
// The start of an edge-opened data stream: preamble, then a ConnectRequest (or, read from the
// other side, a ConnectResponse). Whatever decodes must re-encode to a message that decodes to
// the same value.
#include <cstdint>
#include <cstdlib>
#include <span>

#include "codec/connect_metadata.hpp"
#include "codec/stream_preamble.hpp"

using namespace tunnelkit::cloudflare;

namespace {

template <typename Message, typename Decode, typename Encode>
void CheckRoundTrip(std::span<const std::uint8_t> bytes, const MetadataLimits& limits,
                    Decode decode, Encode encode) {
  auto result = decode(bytes, limits);
  if (result.status == DecodeStatus::kOk) {
    if (result.consumed > bytes.size() || result.consumed % 8 != 0) std::abort();
    auto again = decode(encode(result.message), limits);
    if (again.status != DecodeStatus::kOk || !(again.message == result.message)) std::abort();
  } else if (result.status == DecodeStatus::kError && result.error.empty()) {
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const std::uint8_t> bytes(data, size);
  auto preamble = DecodePreamble(bytes);
  if (preamble.status == DecodeStatus::kOk) bytes = bytes.subspan(preamble.consumed);
  MetadataLimits limits;
  limits.max_message_bytes = 64 * 1024;
  limits.max_entries = 64;
  CheckRoundTrip<ConnectRequest>(bytes, limits, DecodeConnectRequest, EncodeConnectRequest);
  CheckRoundTrip<ConnectResponse>(bytes, limits, DecodeConnectResponse, EncodeConnectResponse);
  return 0;
}
