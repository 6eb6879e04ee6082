// Small text encodings the quick-tunnel protocol uses: UUIDs (tunnel id, connector id,
// connection id) and standard base64 (the tunnel secret in the API's JSON). Pure.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tunnelkit::cloudflare {

using Uuid = std::array<std::uint8_t, 16>;

// "8-4-4-4-12" hex (either case); nullopt for anything else, including the empty string.
std::optional<Uuid> ParseUuid(std::string_view text);
// Lower-case "8-4-4-4-12".
std::string FormatUuid(std::span<const std::uint8_t> bytes);
// A random version-4 UUID (OpenSSL RAND_bytes).
Uuid RandomUuid();

// Standard alphabet with padding ("=") as Go's encoding/json writes []byte. nullopt when the
// text is not canonical base64 or decodes to more than max_bytes.
std::optional<std::vector<std::uint8_t>> DecodeBase64(std::string_view text,
                                                      std::size_t max_bytes = 4096);
std::string EncodeBase64(std::span<const std::uint8_t> bytes);

}  // namespace tunnelkit::cloudflare
