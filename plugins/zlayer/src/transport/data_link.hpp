// The link a data upgrade belongs to, as our agent names it in the upgrade head: header
// `Tunnelkit-Link: <tunnel id>.<data secret as 32 hex digits>` (the pair DataAttach carries
// again after the upgrade). With it the server's front door admits a data upgrade by its link
// as soon as it has read the head, instead of counting it, until DataAttach, against the
// connections its source address may hold before authenticating: an agent opens one data
// WebSocket per public connection, all from its one address. Pure: parsed here, checked by
// the server (constant time), tested and fuzzable on its own.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "codec/messages.hpp"

namespace tunnelkit::zlayer::transport {

inline constexpr char kDataLinkHeader[] = "Tunnelkit-Link";

struct DataLinkCredential {
  codec::Uuid tunnel_id;
  std::array<std::uint8_t, 16> secret{};
};

std::string FormatDataLinkCredential(const DataLinkCredential& credential);
// nullopt unless `value` is exactly one credential as FormatDataLinkCredential writes it (hex
// digits in either case).
std::optional<DataLinkCredential> ParseDataLinkCredential(std::string_view value);

}  // namespace tunnelkit::zlayer::transport
