// fuzz-links: tunnelkit_cloudflare_wire CapnProto::capnp
// fuzz-sources: plugins/cloudflare/wire/src/codec/*.cpp
// fuzz-libs: fuzz_capnp OpenSSL::Crypto fuzz_framework_text
// The start of an edge-opened data stream: preamble, then a ConnectRequest (or, read from the
// other side, a ConnectResponse). Whatever decodes must re-encode to a message that decodes to
// the same value. Decoded metadata is then read as an HTTP head (HttpMethod, HttpHost,
// HttpHeader:*, HttpStatus): accepted heads must re-encode to the same head and never carry
// CR/LF/NUL into a header.
#include <cstdint>
#include <cstdlib>
#include <span>

#include "tunnelkit/cloudflare/wire/codec/connect_metadata.hpp"
#include "tunnelkit/cloudflare/wire/codec/http_metadata.hpp"
#include "tunnelkit/cloudflare/wire/codec/stream_preamble.hpp"

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

void CheckHeaders(const HttpHeaderList& headers) {
  for (const auto& [name, value] : headers) {
    if (name.empty() || name.find_first_of(":\r\n ") != std::string::npos) std::abort();
    if (value.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) std::abort();
  }
}

void CheckHttpHeads(const std::vector<MetadataEntry>& metadata) {
  HttpRequestMeta request;
  if (DecodeRequestMetadata(metadata, request).empty()) {
    CheckHeaders(request.headers);
    HttpRequestMeta again;
    if (!DecodeRequestMetadata(EncodeRequestMetadata(request), again).empty()) std::abort();
    if (again.method != request.method || again.headers != request.headers) std::abort();
  }
  HttpResponseMeta response;
  if (DecodeResponseMetadata(metadata, response).empty()) {
    CheckHeaders(response.headers);
    if (response.status < 100 || response.status > 999) std::abort();
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
  if (auto request = DecodeConnectRequest(bytes, limits); request.status == DecodeStatus::kOk) {
    CheckHttpHeads(request.message.metadata);
    (void)TargetFromDest(request.message.dest);
    (void)HostFromDest(request.message.dest);
  }
  if (auto response = DecodeConnectResponse(bytes, limits); response.status == DecodeStatus::kOk)
    CheckHttpHeads(response.message.metadata);
  return 0;
}
