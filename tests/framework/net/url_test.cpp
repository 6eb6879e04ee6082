// Splitting URLs and authorities: the shapes flags, configuration and wire fields use.
#include <gtest/gtest.h>

#include <string>

#include "tunnelkit/net/url.hpp"

namespace tunnelkit::net {
namespace {

struct AuthorityCase {
  const char* text;
  const char* host;
  const char* port;
  bool has_port;
};

TEST(SplitAuthorityTest, HostAndPortInEveryShape) {
  const AuthorityCase cases[] = {
      {"example.com:8080", "example.com", "8080", true},
      {"example.com", "example.com", "", false},
      {":9000", "", "9000", true},
      {"h:", "h", "", true},
      {"[::1]:443", "::1", "443", true},
      {"[2001:db8::1]", "2001:db8::1", "", false},
  };
  for (const auto& c : cases) {
    auto a = SplitAuthority(c.text);
    ASSERT_TRUE(a) << c.text << ": " << a.message();
    EXPECT_EQ(a->host, c.host) << c.text;
    EXPECT_EQ(a->port, c.port) << c.text;
    EXPECT_EQ(a->has_port, c.has_port) << c.text;
  }
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

struct UrlCase {
  const char* text;
  const char* scheme;
  const char* authority;
  const char* target;
};

TEST(SplitUrlTest, SchemeAuthorityAndTarget) {
  const UrlCase cases[] = {
      {"https://example.com:8443/a/b?c=d", "https", "example.com:8443", "/a/b?c=d"},
      {"http://h?x=1", "http", "h", "?x=1"},
      {"tcp://[::1]:22", "tcp", "[::1]:22", ""},
      {"ws://h#frag", "ws", "h", "#frag"},
  };
  for (const auto& c : cases) {
    auto u = SplitUrl(c.text);
    ASSERT_TRUE(u) << c.text << ": " << u.message();
    EXPECT_EQ(u->scheme, c.scheme) << c.text;
    EXPECT_EQ(u->authority, c.authority) << c.text;
    EXPECT_EQ(u->target, c.target) << c.text;
  }
}

TEST(SplitUrlTest, RefusesTextWithoutScheme) {
  for (const char* bad : {"example.com:80", "://host", "/path"}) EXPECT_FALSE(SplitUrl(bad)) << bad;
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
