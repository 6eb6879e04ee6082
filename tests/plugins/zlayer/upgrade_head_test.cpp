// The front door's reading of a connection's upgrade head (transport/upgrade_head.hpp).
#include "transport/upgrade_head.hpp"

#include <gtest/gtest.h>

#include <string>

namespace tunnelkit::zlayer::transport {
namespace {

std::string Upgrade(const std::string& extra) {
  return "GET /data HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
         extra + "\r\n";
}

TEST(ZlayerUpgradeHead, TellsTheDataSubprotocols) {
  UpgradeRequest request;
  EXPECT_EQ(
      ParseDataUpgrade(Upgrade("Sec-WebSocket-Protocol: tunnelkit-data.v2\r\n"), 8192, request),
      DataKind::kPerConnection);
  EXPECT_EQ(request.target(), "/data");
  UpgradeRequest shared;
  EXPECT_EQ(ParseDataUpgrade(Upgrade("Sec-WebSocket-Protocol: x, tunnelkit-data-mux.v1\r\n"), 8192,
                             shared),
            DataKind::kShared);
}

TEST(ZlayerUpgradeHead, AnythingElseIsNotData) {
  UpgradeRequest request;
  // A control upgrade (no data subprotocol), a plain request, a malformed head.
  EXPECT_FALSE(ParseDataUpgrade(Upgrade(""), 8192, request));
  EXPECT_FALSE(ParseDataUpgrade(
      "GET / HTTP/1.1\r\nSec-WebSocket-Protocol: tunnelkit-data.v2\r\n\r\n", 8192, request));
  EXPECT_FALSE(ParseDataUpgrade("GET\r\n\r\n", 8192, request));
  // Over the header limit.
  EXPECT_FALSE(ParseDataUpgrade(Upgrade("Sec-WebSocket-Protocol: tunnelkit-data.v2\r\nX-Pad: " +
                                        std::string(9000, 'a') + "\r\n"),
                                8192, request));
}

}  // namespace
}  // namespace tunnelkit::zlayer::transport
