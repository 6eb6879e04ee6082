// IP:PORT text as flags and configuration give it (resolvers, cfedge listen addresses).
#include "tunnelkit/net/ip_port.hpp"

#include <gtest/gtest.h>

namespace tunnelkit::net {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;

TEST(IpPort, ParsesIpLiteralAndPort) {
  EXPECT_EQ(ParseIpPort("127.0.0.1:853"), tcp::endpoint(asio::ip::make_address("127.0.0.1"), 853));
  EXPECT_EQ(ParseIpPort("[::1]:53")->address().to_string(), "::1");
  for (const char* bad : {"1.1.1.1", "dns.example:53", "1.1.1.1:0", "1.1.1.1:99999", "[::1]53",
                          ":53", "1.1.1.1:5x"}) {
    auto endpoint = ParseIpPort(bad);
    ASSERT_FALSE(endpoint) << bad;
    EXPECT_NE(endpoint.message().find("expected IP:PORT"), std::string::npos) << bad;
  }
}

TEST(IpPort, PortZeroOnlyWhenAllowed) {
  EXPECT_FALSE(ParseIpPort("127.0.0.1:0"));
  auto any_port = ParseIpPort("127.0.0.1:0", /*allow_port_zero=*/true);
  ASSERT_TRUE(any_port);
  EXPECT_EQ(any_port->port(), 0);
}

}  // namespace
}  // namespace tunnelkit::net
