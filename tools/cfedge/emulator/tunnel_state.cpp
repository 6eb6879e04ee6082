#include "emulator/tunnel_state.hpp"

#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <system_error>

#include <unistd.h>
#include <nlohmann/json.hpp>

#include "emulator/certificates.hpp"

namespace tunnelkit::cloudflare::emulator {

using nlohmann::json;

std::string TunnelsToJson(const std::vector<QuickTunnel>& tunnels) {
  json list = json::array();
  for (const auto& t : tunnels) {
    list.push_back({{"id", FormatUuid(t.credentials.tunnel_id)},
                    {"name", t.name},
                    {"hostname", t.hostname},
                    {"account_tag", t.credentials.account_tag},
                    {"secret", EncodeBase64(t.credentials.secret)}});
  }
  return json{{"tunnels", list}}.dump(2) + "\n";
}

std::vector<QuickTunnel> TunnelsFromJson(std::string_view text) {
  json doc = json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) throw std::runtime_error("state: not a JSON object");
  auto list = doc.find("tunnels");
  if (list == doc.end() || !list->is_array()) throw std::runtime_error("state: no tunnels array");
  std::vector<QuickTunnel> out;
  for (std::size_t i = 0; i < list->size(); ++i) {
    const json& item = (*list)[i];
    auto field = [&](const char* name) -> std::string {
      auto it = item.is_object() ? item.find(name) : item.end();
      if (it == item.end() || !it->is_string()) {
        throw std::runtime_error("state: tunnels[" + std::to_string(i) + "]." + name +
                                 " is missing or not a string");
      }
      return it->get<std::string>();
    };
    QuickTunnel t;
    auto id = ParseUuid(field("id"));
    if (!id) throw std::runtime_error("state: tunnels[" + std::to_string(i) + "].id is no UUID");
    t.credentials.tunnel_id = *id;
    t.name = field("name");
    t.hostname = field("hostname");
    if (!IsValidHostname(t.hostname)) {
      throw std::runtime_error("state: tunnels[" + std::to_string(i) + "].hostname is invalid");
    }
    t.credentials.account_tag = field("account_tag");
    auto secret = DecodeBase64(field("secret"));
    if (!secret || secret->size() != kTunnelSecretSize) {
      throw std::runtime_error("state: tunnels[" + std::to_string(i) +
                               "].secret is not 32 bytes of base64");
    }
    t.credentials.secret = std::move(*secret);
    out.push_back(std::move(t));
  }
  return out;
}

void SaveTunnels(const std::string& path, const std::vector<QuickTunnel>& tunnels) {
  std::string temp = path + ".tmp" + std::to_string(::getpid());
  WriteFile(temp, TunnelsToJson(tunnels), true);
  std::error_code ec;
  std::filesystem::rename(temp, path, ec);
  if (ec) {
    std::string reason = ec.message();
    std::filesystem::remove(temp, ec);
    throw std::runtime_error("cannot write " + path + ": " + reason);
  }
}

std::vector<QuickTunnel> LoadTunnels(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return {};
  try {
    return TunnelsFromJson(ReadFile(path));
  } catch (const std::exception& e) {
    throw std::runtime_error(path + ": " + e.what());
  }
}

}  // namespace tunnelkit::cloudflare::emulator
