// Splitting URLs and authorities: the shapes flags, configuration and wire fields use.
#include <gtest/gtest.h>

#include "tunnelkit/net/url.hpp"

namespace tunnelkit::net {
namespace {

TEST(SplitAuthorityTest, HostAndPort) {
  auto a = SplitAuthority("example.com:8080");
  ASSERT_TRUE(a) << a.message();
  EXPECT_EQ(a->host, "example.com");
  EXPECT_EQ(a->port, "8080");
  EXPECT_TRUE(a->has_port);
  auto bare = SplitAuthority("example.com");
  ASSERT_TRUE(bare);
  EXPECT_EQ(bare->host, "example.com");
  EXPECT_FALSE(bare->has_port);
  EXPECT_EQ(bare->port, "");
  auto any = SplitAuthority(":9000");
  ASSERT_TRUE(any);
  EXPECT_EQ(any->host, "");
  EXPECT_EQ(any->port, "9000");
  auto empty_port = SplitAuthority("h:");
  ASSERT_TRUE(empty_port);
  EXPECT_TRUE(empty_port->has_port);
  EXPECT_EQ(empty_port->port, "");
}

TEST(SplitAuthorityTest, BracketedIpv6) {
  auto a = SplitAuthority("[::1]:443");
  ASSERT_TRUE(a) << a.message();
  EXPECT_EQ(a->host, "::1");
  EXPECT_EQ(a->port, "443");
  auto bare = SplitAuthority("[2001:db8::1]");
  ASSERT_TRUE(bare);
  EXPECT_EQ(bare->host, "2001:db8::1");
  EXPECT_FALSE(bare->has_port);
}

TEST(SplitAuthorityTest, RefusesMalformedShapes) {
  for (const char* bad : {"[::1", "[::1]x", "[::1]8080", "::1", "a:b:c"}) {
    auto a = SplitAuthority(bad);
    EXPECT_FALSE(a) << bad;
    if (!a) {
      EXPECT_EQ(a.kind(), ErrorKind::kInvalid) << bad;
    }
  }
}

TEST(SplitUrlTest, SchemeAuthorityAndTarget) {
  auto u = SplitUrl("https://example.com:8443/a/b?c=d");
  ASSERT_TRUE(u) << u.message();
  EXPECT_EQ(u->scheme, "https");
  EXPECT_EQ(u->authority, "example.com:8443");
  EXPECT_EQ(u->target, "/a/b?c=d");
  auto query = SplitUrl("http://h?x=1");
  ASSERT_TRUE(query);
  EXPECT_EQ(query->authority, "h");
  EXPECT_EQ(query->target, "?x=1");
  auto bare = SplitUrl("tcp://[::1]:22");
  ASSERT_TRUE(bare);
  EXPECT_EQ(bare->authority, "[::1]:22");
  EXPECT_EQ(bare->target, "");
}

TEST(SplitUrlTest, RefusesTextWithoutScheme) {
  EXPECT_FALSE(SplitUrl("example.com:80"));
  EXPECT_FALSE(SplitUrl("://host"));
  EXPECT_FALSE(SplitUrl("/path"));
}

TEST(JoinHostPortTest, BracketsIpv6AndRoundTrips) {
  EXPECT_EQ(JoinHostPort("127.0.0.1", 80), "127.0.0.1:80");
  EXPECT_EQ(JoinHostPort("example.com", 443), "example.com:443");
  EXPECT_EQ(JoinHostPort("::1", 8080), "[::1]:8080");
  const std::string joined = JoinHostPort("2001:db8::1", 22);
  auto split = SplitAuthority(joined);
  ASSERT_TRUE(split) << split.message();
  EXPECT_EQ(split->host, "2001:db8::1");
  EXPECT_EQ(split->port, "22");
}

}  // namespace
}  // namespace tunnelkit::net
