#include "tunnelkit/cloudflare/wire/api/quick_tunnel.hpp"

#include <algorithm>
#include <cctype>

#include <nlohmann/json.hpp>

#include "tunnelkit/net/host_name.hpp"

namespace tunnelkit::cloudflare {

namespace {

using nlohmann::json;

// Go's encoding/json matches object keys case-insensitively; so do we.
const json* FindKey(const json& object, std::string_view key) {
  if (!object.is_object()) return nullptr;
  auto exact = object.find(std::string(key));
  if (exact != object.end()) return &*exact;
  for (auto it = object.begin(); it != object.end(); ++it) {
    const std::string& name = it.key();
    if (name.size() == key.size() &&
        std::equal(name.begin(), name.end(), key.begin(), [](char a, char b) {
          return std::tolower(static_cast<unsigned char>(a)) ==
                 std::tolower(static_cast<unsigned char>(b));
        })) {
      return &it.value();
    }
  }
  return nullptr;
}

bool ReadString(const json& object, std::string_view key, bool required, std::string& out,
                std::string& error) {
  const json* value = FindKey(object, key);
  if (value == nullptr || value->is_null()) {
    if (required) error = "reply has no result." + std::string(key);
    return !required;
  }
  if (!value->is_string()) {
    error = "result." + std::string(key) + " is not a string";
    return false;
  }
  out = value->get<std::string>();
  return true;
}

std::string Snippet(std::string_view body) {
  std::string out(body.substr(0, 100));
  for (char& c : out) {
    if (c == '\n' || c == '\r' || static_cast<unsigned char>(c) < 0x20) c = ' ';
  }
  return out;
}

std::string BusinessErrors(const json& root) {
  const json* errors = FindKey(root, "errors");
  if (errors == nullptr || !errors->is_array() || errors->empty()) return {};
  std::string out;
  for (const auto& entry : *errors) {
    if (!out.empty()) out += "; ";
    const json* code = FindKey(entry, "code");
    const json* message = FindKey(entry, "message");
    if (code != nullptr && code->is_number_integer())
      out += std::to_string(code->get<long long>()) + " ";
    if (message != nullptr && message->is_string()) out += message->get<std::string>();
  }
  return out;
}

}  // namespace

bool IsValidHostname(std::string_view host) {
  // What the API issues: no '_', no trailing dot.
  return net::CheckHostName(host, {.allow_underscore = false, .allow_trailing_dot = false}).ok();
}

Result<QuickTunnel> ParseQuickTunnelReply(std::string_view body) {
  if (body.size() > kMaxQuickTunnelReplyBytes) {
    return Error::TooLarge("reply is " + std::to_string(body.size()) + " bytes (limit " +
                           std::to_string(kMaxQuickTunnelReplyBytes) + ")");
  }
  json root = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) {
    return Error::Invalid("reply is not JSON: \"" + Snippet(body) + "\"");
  }
  const json* success = FindKey(root, "success");
  const json* result = FindKey(root, "result");
  if (success != nullptr && success->is_boolean() && !success->get<bool>()) {
    std::string errors = BusinessErrors(root);
    return Error::Unsupported("the service refused to create a tunnel" +
                              (errors.empty() ? "" : ": " + errors));
  }
  if (result == nullptr || !result->is_object()) {
    std::string errors = BusinessErrors(root);
    return Error::Invalid("reply has no result object" + (errors.empty() ? "" : ": " + errors));
  }
  QuickTunnel tunnel;
  std::string id, secret, error;
  if (!ReadString(*result, "id", true, id, error) ||
      !ReadString(*result, "name", false, tunnel.name, error) ||
      !ReadString(*result, "hostname", true, tunnel.hostname, error) ||
      !ReadString(*result, "account_tag", true, tunnel.credentials.account_tag, error) ||
      !ReadString(*result, "secret", true, secret, error)) {
    return Error::Invalid(error);
  }
  auto uuid = ParseUuid(id);
  if (!uuid) {
    return Error::Invalid("result.id is not a UUID: \"" + Snippet(id) + "\"");
  }
  tunnel.credentials.tunnel_id = *uuid;
  if (!IsValidHostname(tunnel.hostname)) {
    return Error::Invalid("result.hostname is not a host name: \"" + Snippet(tunnel.hostname) +
                          "\"");
  }
  if (tunnel.credentials.account_tag.empty() || tunnel.credentials.account_tag.size() > 256) {
    return Error::Invalid("result.account_tag is empty or longer than 256 bytes");
  }
  auto decoded = DecodeBase64(secret, kTunnelSecretSize);
  if (!decoded) {
    return Error::Invalid("result.secret is not base64");
  }
  if (decoded->size() != kTunnelSecretSize) {
    return Error::Invalid("result.secret decodes to " + std::to_string(decoded->size()) +
                          " bytes, not " + std::to_string(kTunnelSecretSize));
  }
  tunnel.credentials.secret = std::move(*decoded);
  return tunnel;
}

std::string BuildQuickTunnelReply(const QuickTunnel& tunnel) {
  json reply = {
      {"success", true},
      {"result",
       {{"id", FormatUuid(tunnel.credentials.tunnel_id)},
        {"name", tunnel.name},
        {"hostname", tunnel.hostname},
        {"account_tag", tunnel.credentials.account_tag},
        {"secret", EncodeBase64(tunnel.credentials.secret)}}},
      {"errors", json::array()},
      {"messages", json::array()},
  };
  return reply.dump();
}

}  // namespace tunnelkit::cloudflare
