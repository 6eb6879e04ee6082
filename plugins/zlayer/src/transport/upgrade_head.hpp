// The upgrade head a connection sends first at the zlayer front door, as far as the door needs
// it: is it a data-plane upgrade, and for which subprotocol. Pure (front_door.cpp does the I/O),
// so that the parsing of these untrusted bytes can be tested and fuzzed on its own.
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

#include "transport/data_socket.hpp"

namespace tunnelkit::zlayer::transport {

// Parses a complete head (up to and including its blank line) of at most `header_limit` bytes.
// Returns the data subprotocol it asks for, with the parsed head in `request`; nullopt when it
// is malformed or not a data upgrade (a control connection for libwebsockets, or anything
// else, which libwebsockets answers).
std::optional<DataKind> ParseDataUpgrade(std::string_view head, std::size_t header_limit,
                                         UpgradeRequest& request);

}  // namespace tunnelkit::zlayer::transport
