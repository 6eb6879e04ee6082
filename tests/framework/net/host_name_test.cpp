// Host name shapes, and the two rules callers choose: '_' and a trailing dot.
#include <gtest/gtest.h>

#include <string>

#include "tunnelkit/net/host_name.hpp"

namespace tunnelkit::net {
namespace {

TEST(HostNameTest, AcceptsOrdinaryNames) {
  for (const char* ok : {"localhost", "example.com", "a-b.example.com", "X1.Y2", "1.2.3.4"}) {
    EXPECT_TRUE(CheckHostName(ok)) << ok;
  }
}

TEST(HostNameTest, RefusesBadShapesWithAReason) {
  const std::string long_label(64, 'a');
  const std::string long_name = std::string(250, 'a') + ".com";
  for (const std::string& bad :
       {std::string(), std::string(".example.com"), std::string("a..b"),
        std::string("exa mple.com"), std::string("ex/ample"), long_label + ".com", long_name}) {
    auto result = CheckHostName(bad);
    EXPECT_FALSE(result) << bad;
    if (!result) {
      EXPECT_EQ(result.kind(), ErrorKind::kInvalid);
      EXPECT_FALSE(result.message().empty());
    }
  }
  EXPECT_TRUE(CheckHostName(std::string(63, 'a') + ".com"));
}

TEST(HostNameTest, UnderscoreOnlyWhenAllowed) {
  EXPECT_FALSE(CheckHostName("_srv.example.com"));
  EXPECT_TRUE(CheckHostName("_srv.example.com", {.allow_underscore = true}));
}

TEST(HostNameTest, TrailingDotOnlyWhenAllowed) {
  EXPECT_FALSE(CheckHostName("example.com."));
  EXPECT_TRUE(CheckHostName("example.com.", {.allow_trailing_dot = true}));
  // A dot alone is no name under either rule.
  EXPECT_FALSE(CheckHostName(".", {.allow_trailing_dot = true}));
}

}  // namespace
}  // namespace tunnelkit::net
