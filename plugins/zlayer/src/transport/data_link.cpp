#include "transport/data_link.hpp"

#include "tunnelkit/hex.hpp"

namespace tunnelkit::zlayer::transport {

namespace {

constexpr std::size_t kUuidLength = 36;  // the hyphenated form

}  // namespace

std::string FormatDataLinkCredential(const DataLinkCredential& credential) {
  std::string text = credential.tunnel_id.ToString();
  text += '.';
  for (const std::uint8_t byte : credential.secret) hex::AppendByte(text, byte);
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
    const int high = hex::DigitValue(hex[2 * i]);
    const int low = hex::DigitValue(hex[2 * i + 1]);
    if (high < 0 || low < 0) return std::nullopt;
    credential.secret[i] = static_cast<std::uint8_t>(high << 4 | low);
  }
  return credential;
}

}  // namespace tunnelkit::zlayer::transport
