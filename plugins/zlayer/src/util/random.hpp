// Random identifiers and secrets (OpenSSL's CSPRNG).
#pragma once

#include <array>
#include <cstdint>

#include "codec/messages.hpp"

namespace tunnelkit::zlayer {

codec::Uuid RandomUuidV4();
std::array<std::uint8_t, 16> RandomSecret();

}  // namespace tunnelkit::zlayer
