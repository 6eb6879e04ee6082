// The quick-tunnel API's reply (specs/cloudflare.md section 1): POST <service>/tunnel answers
// {"success":true,"result":{"id","name","hostname","account_tag","secret"},"errors":[]}. Parsing
// and building that JSON is pure; the HTTP exchange lives in quick_tunnel_client.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tunnelkit/cloudflare/wire/codec/encoding.hpp"
#include "tunnelkit/result.hpp"

namespace tunnelkit::cloudflare {

inline constexpr std::size_t kTunnelSecretSize = 32;
inline constexpr std::size_t kMaxQuickTunnelReplyBytes = 64 * 1024;

// What a client needs to register connections for a quick tunnel.
struct TunnelCredentials {
  Uuid tunnel_id{};
  std::string account_tag;
  std::vector<std::uint8_t> secret;  // 32 bytes; never logged
};

struct QuickTunnel {
  TunnelCredentials credentials;
  std::string name;
  std::string hostname;  // no scheme: <words>.trycloudflare.com
  std::string PublicUrl() const { return "https://" + hostname; }
};

// Parses the reply body. A failure's one-line reason quotes at most the first 100 bytes of a
// non-JSON body (e.g. "error code: 1015"); its kind is kUnsupported when the service refused
// (success: false), kTooLarge over the size limit, kInvalid otherwise.
Result<QuickTunnel> ParseQuickTunnelReply(std::string_view body);

// The reply an API emulator sends for `tunnel` (tools/cfedge).
std::string BuildQuickTunnelReply(const QuickTunnel& tunnel);

// True for a DNS host name without scheme, port or path (letters, digits, '-', '.').
bool IsValidHostname(std::string_view host);

}  // namespace tunnelkit::cloudflare
