#include "transport/data_link.hpp"

namespace tunnelkit::zlayer::transport {

namespace {

constexpr char kHexDigits[] = "0123456789abcdef";
constexpr std::size_t kUuidLength = 36;  // the hyphenated form

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string FormatDataLinkCredential(const DataLinkCredential& credential) {
  std::string text = credential.tunnel_id.ToString();
  text += '.';
  for (const std::uint8_t byte : credential.secret) {
    text += kHexDigits[byte >> 4];
    text += kHexDigits[byte & 0x0f];
  }
  return text;
}

std::optional<DataLinkCredential> ParseDataLinkCredential(std::string_view value) {
  DataLinkCredential credential;
  const std::size_t length = kUuidLength + 1 + 2 * credential.secret.size();
  if (value.size() != length || value[kUuidLength] != '.') return std::nullopt;
  const auto id = codec::Uuid::Parse(value.substr(0, kUuidLength));
  if (!id) return std::nullopt;
  credential.tunnel_id = *id;
  const std::string_view hex = value.substr(kUuidLength + 1);
  for (std::size_t i = 0; i < credential.secret.size(); ++i) {
    const int high = HexValue(hex[2 * i]);
    const int low = HexValue(hex[2 * i + 1]);
    if (high < 0 || low < 0) return std::nullopt;
    credential.secret[i] = static_cast<std::uint8_t>(high << 4 | low);
  }
  return credential;
}

}  // namespace tunnelkit::zlayer::transport
