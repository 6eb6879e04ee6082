#include "util/random.hpp"

#include <openssl/rand.h>

#include <stdexcept>

namespace tunnelkit::zlayer {

std::array<std::uint8_t, 16> RandomSecret() {
  std::array<std::uint8_t, 16> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
    throw std::runtime_error("OpenSSL RAND_bytes failed");
  }
  return bytes;
}

codec::Uuid RandomUuidV4() {
  codec::Uuid uuid;
  uuid.bytes = RandomSecret();
  uuid.bytes[6] = static_cast<std::uint8_t>((uuid.bytes[6] & 0x0f) | 0x40);  // version 4
  uuid.bytes[8] = static_cast<std::uint8_t>((uuid.bytes[8] & 0x3f) | 0x80);  // RFC 4122 variant
  return uuid;
}

}  // namespace tunnelkit::zlayer
