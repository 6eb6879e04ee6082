// Hexadecimal digits: one place for every codec that reads or writes them (UUIDs, secrets,
// chunk sizes), so that each accepts the same digits and writes the same case.
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace tunnelkit::hex {

inline constexpr char kLowerDigits[] = "0123456789abcdef";

// The value of one hex digit of either case, or -1.
constexpr int DigitValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Appends `byte` as two lower-case digits.
inline void AppendByte(std::string& out, std::uint8_t byte) {
  out += kLowerDigits[byte >> 4];
  out += kLowerDigits[byte & 0x0f];
}

// `bytes` as lower-case digits, two per byte.
inline std::string Encode(std::span<const std::uint8_t> bytes) {
  std::string out;
  out.reserve(2 * bytes.size());
  for (const std::uint8_t byte : bytes) AppendByte(out, byte);
  return out;
}

}  // namespace tunnelkit::hex
