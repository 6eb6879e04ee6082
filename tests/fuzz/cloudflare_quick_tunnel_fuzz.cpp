// fuzz-links: tunnelkit_cloudflare_wire
// fuzz-sources: plugins/cloudflare/wire/src/api/quick_tunnel.cpp
// fuzz-sources: plugins/cloudflare/wire/src/codec/encoding.cpp
// fuzz-libs: nlohmann_json::nlohmann_json OpenSSL::Crypto fuzz_framework_text
// The quick-tunnel API's reply body (JSON from the service): anything either fails with a
// reason or gives credentials within the limits (a UUID, a host name, a 32-byte secret, an
// account tag of 1..256 bytes) that the emulator's BuildQuickTunnelReply turns back into a
// reply that parses to the same tunnel.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "tunnelkit/cloudflare/wire/api/quick_tunnel.hpp"

using namespace tunnelkit::cloudflare;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  const auto tunnel = ParseQuickTunnelReply(body);
  if (!tunnel) {
    if (tunnel.message().empty() || tunnel.message().find('\n') != std::string::npos) std::abort();
    return 0;
  }
  if (!IsValidHostname(tunnel->hostname) ||
      tunnel->credentials.secret.size() != kTunnelSecretSize ||
      tunnel->credentials.account_tag.empty() || tunnel->credentials.account_tag.size() > 256) {
    std::abort();
  }
  (void)tunnel->PublicUrl();
  const auto again = ParseQuickTunnelReply(BuildQuickTunnelReply(*tunnel));
  if (!again || again->credentials.tunnel_id != tunnel->credentials.tunnel_id ||
      again->credentials.account_tag != tunnel->credentials.account_tag ||
      again->credentials.secret != tunnel->credentials.secret || again->name != tunnel->name ||
      again->hostname != tunnel->hostname) {
    std::abort();
  }
  return 0;
}
