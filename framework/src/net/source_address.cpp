#include "tunnelkit/net/source_address.hpp"

#include <cstring>
#include <string_view>

namespace tunnelkit::net {

namespace asio = boost::asio;

SourceKey SourceKeyOf(const asio::ip::address& address) {
  SourceKey key;
  if (address.is_v6() && address.to_v6().is_v4_mapped()) {
    return SourceKeyOf(asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6()));
  }
  if (address.is_v4()) {
    key.bytes[0] = 4;
    const auto v4 = address.to_v4().to_bytes();
    std::memcpy(key.bytes.data() + 1, v4.data(), v4.size());
  } else {
    key.bytes[0] = 6;
    const auto v6 = address.to_v6().to_bytes();
    std::memcpy(key.bytes.data() + 1, v6.data(), 8);
  }
  return key;
}

std::string SourceKeyText(const SourceKey& key) {
  if (key.bytes[0] == 4) {
    asio::ip::address_v4::bytes_type v4{};
    std::memcpy(v4.data(), key.bytes.data() + 1, v4.size());
    return asio::ip::address_v4(v4).to_string();
  }
  asio::ip::address_v6::bytes_type v6{};
  std::memcpy(v6.data(), key.bytes.data() + 1, 8);
  return asio::ip::address_v6(v6).to_string() + "/64";
}

std::size_t SourceKeyHash::operator()(const SourceKey& key) const noexcept {
  return std::hash<std::string_view>()(
      std::string_view(reinterpret_cast<const char*>(key.bytes.data()), key.bytes.size()));
}

}  // namespace tunnelkit::net
