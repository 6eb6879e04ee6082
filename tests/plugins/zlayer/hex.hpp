// Bytes from the hex strings of the golden vector files (spaces allowed between bytes).
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace tunnelkit::zlayer::test {

inline std::vector<std::uint8_t> FromHex(std::string hex) {
  std::erase(hex, ' ');
  std::vector<std::uint8_t> out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<std::uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

}  // namespace tunnelkit::zlayer::test
