#include "tunnelkit/cloudflare/wire/codec/encoding.hpp"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <stdexcept>

#include "tunnelkit/hex.hpp"
#include "tunnelkit/uuid_text.hpp"

namespace tunnelkit::cloudflare {

namespace {

bool IsBase64Char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '/';
}

}  // namespace

std::optional<Uuid> ParseUuid(std::string_view text) {
  auto parsed = uuid::Parse(text);
  if (!parsed) return std::nullopt;
  return *parsed;
}

std::string FormatUuid(std::span<const std::uint8_t> bytes) {
  return uuid::Format(bytes);
}

Uuid RandomUuid() {
  Uuid id{};
  if (RAND_bytes(id.data(), static_cast<int>(id.size())) != 1) {
    throw std::runtime_error("RAND_bytes failed");
  }
  id[6] = static_cast<std::uint8_t>((id[6] & 0x0f) | 0x40);
  id[8] = static_cast<std::uint8_t>((id[8] & 0x3f) | 0x80);
  return id;
}

std::optional<std::vector<std::uint8_t>> DecodeBase64(std::string_view text,
                                                      std::size_t max_bytes) {
  if (text.size() % 4 != 0) return std::nullopt;
  if (text.size() / 4 * 3 > max_bytes + 2) return std::nullopt;
  std::size_t padding = 0;
  if (!text.empty() && text.back() == '=') ++padding;
  if (text.size() >= 2 && text[text.size() - 2] == '=') ++padding;
  for (std::size_t i = 0; i < text.size() - padding; ++i) {
    if (!IsBase64Char(text[i])) return std::nullopt;
  }
  std::vector<std::uint8_t> out(text.size() / 4 * 3);
  if (text.empty()) return out;
  int n = EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(text.data()),
                          static_cast<int>(text.size()));
  if (n < 0 || static_cast<std::size_t>(n) < padding) return std::nullopt;
  out.resize(static_cast<std::size_t>(n) - padding);
  if (out.size() > max_bytes) return std::nullopt;
  // Canonical form only: re-encoding must give the same text (rejects stray bits in padding).
  if (EncodeBase64(out) != text) return std::nullopt;
  return out;
}

std::string EncodeBase64(std::span<const std::uint8_t> bytes) {
  std::string out((bytes.size() + 2) / 3 * 4 + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), bytes.data(),
                          static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

}  // namespace tunnelkit::cloudflare
