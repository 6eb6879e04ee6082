// cfedge --state FILE: the quick tunnels the emulator issued, kept across restarts so that a
// restarted edge (same CA) accepts the connector's re-registration. JSON:
// {"tunnels":[{"id","name","hostname","account_tag","secret"(base64)}]}.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "tunnelkit/cloudflare/wire/api/quick_tunnel.hpp"

namespace tunnelkit::cloudflare::emulator {

std::string TunnelsToJson(const std::vector<QuickTunnel>& tunnels);
// Throws std::runtime_error naming the bad field.
std::vector<QuickTunnel> TunnelsFromJson(std::string_view text);

// Writes a temporary file next to `path` (mode 0600: it holds secrets) and renames it over
// `path`, so a crash never leaves half a file. Throws std::runtime_error naming the file.
void SaveTunnels(const std::string& path, const std::vector<QuickTunnel>& tunnels);
// An absent file is an empty list; an unreadable or malformed one throws.
std::vector<QuickTunnel> LoadTunnels(const std::string& path);

}  // namespace tunnelkit::cloudflare::emulator
