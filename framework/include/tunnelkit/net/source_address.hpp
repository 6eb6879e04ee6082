// The "source" that per-client limits count against: an IPv4 address, or the /64 prefix of an
// IPv6 address (one host usually holds a whole /64, so per-address limits would not hold it).
// IPv4-mapped IPv6 addresses count as their IPv4 address.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include <boost/asio/ip/address.hpp>

namespace tunnelkit::net {

struct SourceKey {
  std::array<std::uint8_t, 9> bytes{};  // family byte + 4 (v4) or 8 (v6 prefix) bytes

  friend bool operator==(const SourceKey&, const SourceKey&) = default;
  friend auto operator<=>(const SourceKey&, const SourceKey&) = default;
};

SourceKey SourceKeyOf(const boost::asio::ip::address& address);
// "192.0.2.7" or "2001:db8:1:2::/64", for logs.
std::string SourceKeyText(const SourceKey& key);

struct SourceKeyHash {
  std::size_t operator()(const SourceKey& key) const noexcept;
};

}  // namespace tunnelkit::net
