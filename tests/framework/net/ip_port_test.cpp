// IP:PORT text as flags and configuration give it (resolvers, cfedge listen addresses).
#include "tunnelkit/net/ip_port.hpp"

#include <gtest/gtest.h>

namespace tunnelkit::net {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;

TEST(IpPort, ParsesIpLiteralAndPort) {
  std::string error;
  EXPECT_EQ(ParseIpPort("127.0.0.1:853", error),
            tcp::endpoint(asio::ip::make_address("127.0.0.1"), 853));
  EXPECT_TRUE(error.empty());
  EXPECT_EQ(ParseIpPort("[::1]:53", error).address().to_string(), "::1");
  EXPECT_TRUE(error.empty());
  for (const char* bad : {"1.1.1.1", "dns.example:53", "1.1.1.1:0", "1.1.1.1:99999", "[::1]53",
                          ":53", "1.1.1.1:5x"}) {
    ParseIpPort(bad, error);
    EXPECT_NE(error.find("expected IP:PORT"), std::string::npos) << bad;
  }
}

TEST(IpPort, PortZeroOnlyWhenAllowed) {
  std::string error;
  ParseIpPort("127.0.0.1:0", error);
  EXPECT_FALSE(error.empty());
  EXPECT_EQ(ParseIpPort("127.0.0.1:0", error, /*allow_port_zero=*/true).port(), 0);
  EXPECT_TRUE(error.empty());
}

}  // namespace
}  // namespace tunnelkit::net
