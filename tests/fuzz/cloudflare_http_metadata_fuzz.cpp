// fuzz-links: tunnelkit_cloudflare_wire CapnProto::capnp
// fuzz-sources: plugins/cloudflare/wire/src/codec/*.cpp
// fuzz-libs: fuzz_capnp OpenSSL::Crypto fuzz_framework_text
// The HTTP head carried as ConnectRequest/ConnectResponse metadata (HttpMethod, HttpHost,
// HttpStatus, HttpHeader:<name>), fed directly as entries so that every input reaches the
// metadata decoders (the connect_request target must get through Cap'n Proto first). Input:
// entries separated by 0x00, key and value by the first 0x01. Accepted heads hold no header
// that could smuggle lines to an origin, and re-encode to the same head. The stream preamble
// decoder and the dest URL helpers get the raw bytes.
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tunnelkit/cloudflare/wire/codec/connect_metadata.hpp"
#include "tunnelkit/cloudflare/wire/codec/http_metadata.hpp"
#include "tunnelkit/cloudflare/wire/codec/stream_preamble.hpp"

using namespace tunnelkit::cloudflare;

namespace {

std::vector<MetadataEntry> SplitEntries(std::string_view input) {
  std::vector<MetadataEntry> entries;
  while (!input.empty() && entries.size() < 256) {
    const std::size_t end = input.find('\0');
    const std::string_view entry = input.substr(0, end);
    const std::size_t split = entry.find('\1');
    entries.push_back(
        {std::string(entry.substr(0, split)),
         split == std::string_view::npos ? std::string() : std::string(entry.substr(split + 1))});
    if (end == std::string_view::npos) break;
    input.remove_prefix(end + 1);
  }
  return entries;
}

bool IsTokenChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

void CheckHeaders(const HttpHeaderList& headers) {
  for (const auto& [name, value] : headers) {
    if (name.empty()) std::abort();
    for (char c : name) {
      if (!IsTokenChar(c)) std::abort();
    }
    if (value.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const auto entries = SplitEntries(input);

  HttpRequestMeta request;
  std::string error = DecodeRequestMetadata(entries, request);
  if (error.empty()) {
    CheckHeaders(request.headers);
    HttpRequestMeta again;
    if (!DecodeRequestMetadata(EncodeRequestMetadata(request), again).empty() ||
        again.method != request.method || again.host != request.host ||
        again.headers != request.headers) {
      std::abort();
    }
  } else if (error.find('\n') != std::string::npos) {
    std::abort();
  }

  HttpResponseMeta response;
  error = DecodeResponseMetadata(entries, response);
  if (error.empty()) {
    CheckHeaders(response.headers);
    if (response.status < 100 || response.status > 999) std::abort();
    HttpResponseMeta again;
    if (!DecodeResponseMetadata(EncodeResponseMetadata(response), again).empty() ||
        again.status != response.status || again.headers != response.headers) {
      std::abort();
    }
  } else if (error.find('\n') != std::string::npos) {
    std::abort();
  }

  const std::string dest(input);
  (void)TargetFromDest(dest);
  (void)HostFromDest(dest);
  const auto preamble = DecodePreamble(std::span<const std::uint8_t>(data, size));
  if (preamble.status == DecodeStatus::kOk && preamble.consumed > size) std::abort();
  return 0;
}
