#include "tunnelkit/uuid_text.hpp"

#include "tunnelkit/hex.hpp"

namespace tunnelkit::uuid {

namespace {

bool IsHyphenPosition(std::size_t i) {
  return i == 8 || i == 13 || i == 18 || i == 23;
}

}  // namespace

std::string Format(std::span<const std::uint8_t> bytes) {
  std::string text;
  text.reserve(36);
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) text.push_back('-');
    hex::AppendByte(text, bytes[i]);
  }
  return text;
}

Result<Bytes> Parse(std::string_view text) {
  if (text.size() != 36) {
    return Error::Invalid("a UUID is 36 characters, got " + std::to_string(text.size()));
  }
  Bytes out{};
  std::size_t byte = 0;
  for (std::size_t i = 0; i < text.size();) {
    if (IsHyphenPosition(i)) {
      if (text[i] != '-') return Error::Invalid("UUID: expected '-' at " + std::to_string(i));
      ++i;
      continue;
    }
    const int high = hex::DigitValue(text[i]);
    const int low = hex::DigitValue(text[i + 1]);
    if (high < 0 || low < 0) {
      return Error::Invalid("UUID: not a hex digit at " + std::to_string(high < 0 ? i : i + 1));
    }
    out[byte++] = static_cast<std::uint8_t>(high << 4 | low);
    i += 2;
  }
  return out;
}

}  // namespace tunnelkit::uuid
