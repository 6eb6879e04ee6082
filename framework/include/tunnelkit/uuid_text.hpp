// UUIDs as text, "8-4-4-4-12" hex: one place for every backend that reads or writes them
// (ZLayer's tunnel and connection ids, FerroTunnel's session ids, Cloudflare's tunnel ids).
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "tunnelkit/result.hpp"

namespace tunnelkit::uuid {

using Bytes = std::array<std::uint8_t, 16>;

// Lower case, hyphens after bytes 4, 6, 8 and 10.
std::string Format(std::span<const std::uint8_t> bytes);
// "8-4-4-4-12" hex digits of either case; an Invalid error for anything else.
Result<Bytes> Parse(std::string_view text);

}  // namespace tunnelkit::uuid
