// The quick-tunnel API reply (specs/cloudflare.md section 1).
#include <gtest/gtest.h>

#include <string>

#include "tunnelkit/cloudflare/wire/api/quick_tunnel.hpp"

namespace tunnelkit::cloudflare {
namespace {

const char* kReply =
    R"({"success":true,"result":{"id":"7b7c1f0e-7f7c-4d3b-9a6e-2f1c3b4a5d6e",)"
    R"("name":"qt-abc","hostname":"quiet-river-moon-glow.trycloudflare.com",)"
    R"("account_tag":"0123456789abcdef0123456789abcdef",)"
    R"("secret":"AAcOFRwjKjE4P0ZNVFtiaXB3foWMk5qhqK+2vcTL0tk="},"errors":[],"messages":[]})";

TEST(CloudflareQuickTunnel, ParsesReply) {
  auto tunnel = ParseQuickTunnelReply(kReply);
  ASSERT_TRUE(tunnel) << tunnel.message();
  EXPECT_EQ(FormatUuid(tunnel->credentials.tunnel_id), "7b7c1f0e-7f7c-4d3b-9a6e-2f1c3b4a5d6e");
  EXPECT_EQ(tunnel->name, "qt-abc");
  EXPECT_EQ(tunnel->hostname, "quiet-river-moon-glow.trycloudflare.com");
  EXPECT_EQ(tunnel->PublicUrl(), "https://quiet-river-moon-glow.trycloudflare.com");
  EXPECT_EQ(tunnel->credentials.account_tag, "0123456789abcdef0123456789abcdef");
  ASSERT_EQ(tunnel->credentials.secret.size(), 32u);
  for (std::size_t i = 0; i < 32; ++i) EXPECT_EQ(tunnel->credentials.secret[i], i * 7) << i;
}

TEST(CloudflareQuickTunnel, KeysAreCaseInsensitiveAsInGo) {
  std::string body = kReply;
  body.replace(body.find("\"result\""), 8, "\"Result\"");
  body.replace(body.find("\"hostname\""), 10, "\"HostName\"");
  auto tunnel = ParseQuickTunnelReply(body);
  ASSERT_TRUE(tunnel) << tunnel.message();
  EXPECT_EQ(tunnel->hostname, "quiet-river-moon-glow.trycloudflare.com");
}

TEST(CloudflareQuickTunnel, RoundTripThroughBuilder) {
  auto tunnel = ParseQuickTunnelReply(kReply);
  ASSERT_TRUE(tunnel);
  auto again = ParseQuickTunnelReply(BuildQuickTunnelReply(*tunnel));
  ASSERT_TRUE(again) << again.message();
  EXPECT_EQ(again->credentials.tunnel_id, tunnel->credentials.tunnel_id);
  EXPECT_EQ(again->credentials.secret, tunnel->credentials.secret);
  EXPECT_EQ(again->credentials.account_tag, tunnel->credentials.account_tag);
  EXPECT_EQ(again->hostname, tunnel->hostname);
  EXPECT_EQ(again->name, tunnel->name);
}

struct BadReply {
  std::string body;
  std::string error_part;
};

TEST(CloudflareQuickTunnel, RejectsBadReplies) {
  auto with = [](const std::string& from, const std::string& to) {
    std::string body = kReply;
    body.replace(body.find(from), from.size(), to);
    return body;
  };
  const BadReply cases[] = {
      {"error code: 1015", "not JSON: \"error code: 1015\""},
      {"", "not JSON"},
      {"[1,2]", "not JSON"},
      {R"({"success":false,"errors":[{"code":1003,"message":"nope"}]})", "1003 nope"},
      {R"({"success":true})", "no result object"},
      {with("\"7b7c1f0e-7f7c-4d3b-9a6e-2f1c3b4a5d6e\"", "\"\""), "result.id is not a UUID"},
      {with("\"7b7c1f0e-7f7c-4d3b-9a6e-2f1c3b4a5d6e\"", "17"), "result.id is not a string"},
      {with("\"quiet-river-moon-glow.trycloudflare.com\"", "\"https://x.example\""),
       "result.hostname is not a host name"},
      {with("\"0123456789abcdef0123456789abcdef\"", "\"\""), "account_tag"},
      {with("AAcOFRwjKjE4P0ZNVFtiaXB3foWMk5qhqK+2vcTL0tk=", "aGk="), "decodes to 2 bytes"},
      {with("AAcOFRwjKjE4P0ZNVFtiaXB3foWMk5qhqK+2vcTL0tk=", "not base64!"),
       "result.secret is not base64"},
      {with("\"secret\"", "\"secrets\""), "no result.secret"},
  };
  for (const auto& c : cases) {
    auto tunnel = ParseQuickTunnelReply(c.body);
    ASSERT_FALSE(tunnel) << c.body;
    EXPECT_NE(tunnel.message().find(c.error_part), std::string::npos)
        << tunnel.message() << " / " << c.body;
  }
  EXPECT_EQ(ParseQuickTunnelReply(cases[3].body).kind(), ErrorKind::kUnsupported);
  EXPECT_EQ(ParseQuickTunnelReply(std::string(kMaxQuickTunnelReplyBytes + 1, ' ')).kind(),
            ErrorKind::kTooLarge);
}

TEST(CloudflareQuickTunnel, Hostnames) {
  EXPECT_TRUE(IsValidHostname("a-b.trycloudflare.com"));
  EXPECT_FALSE(IsValidHostname(""));
  EXPECT_FALSE(IsValidHostname("a..b"));
  EXPECT_FALSE(IsValidHostname("a.b:80"));
  EXPECT_FALSE(IsValidHostname("a/b"));
  EXPECT_FALSE(IsValidHostname(std::string(64, 'a') + ".com"));
  // The API's rule, stricter than configuration's: no '_' and no trailing dot.
  EXPECT_FALSE(IsValidHostname("_a.trycloudflare.com"));
  EXPECT_FALSE(IsValidHostname("a.trycloudflare.com."));
}

}  // namespace
}  // namespace tunnelkit::cloudflare
