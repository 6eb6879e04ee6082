// fuzz-links: tunnelkit_cloudflare_wire
// fuzz-sources: plugins/cloudflare/wire/src/dns/dns_codec.cpp
// DNS responses as edge discovery decodes them: any input either decodes or fails with a
// message; decoded SRV targets re-encode as query names within the limits.
#include <cstdint>
#include <cstdlib>
#include <span>
#include <stdexcept>

#include "tunnelkit/cloudflare/wire/dns/dns_codec.hpp"

using namespace tunnelkit::cloudflare::dns;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::span<const std::uint8_t> bytes(data, size);
  std::uint16_t id = size >= 2 ? static_cast<std::uint16_t>((data[0] << 8) | data[1]) : 0;
  auto result = DecodeResponse(bytes, id);
  if (!result) {
    if (result.message().empty() || result.message().find('\n') != std::string::npos) std::abort();
    return 0;
  }
  for (const auto& srv : result->srv) {
    if (srv.target.size() > kMaxNameLength) std::abort();
    if (srv.target.empty()) continue;
    try {
      auto query = EncodeQuery(1, srv.target, RecordType::kA);
      if (query.size() > 12 + kMaxNameLength + 4) std::abort();
    } catch (const std::invalid_argument&) {
      // Labels with dots inside cannot round-trip through a dotted name; that is fine.
    }
  }
  return 0;
}
