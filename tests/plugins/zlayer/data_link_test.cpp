// The link credential a data upgrade carries in its head (transport/data_link.hpp).
#include "transport/data_link.hpp"

#include <gtest/gtest.h>

#include <cctype>
#include <string>

namespace tunnelkit::zlayer::transport {
namespace {

DataLinkCredential Sample() {
  DataLinkCredential credential;
  credential.tunnel_id = *codec::Uuid::Parse("00112233-4455-6677-8899-aabbccddeeff");
  for (std::size_t i = 0; i < credential.secret.size(); ++i) {
    credential.secret[i] = static_cast<std::uint8_t>(0xf0 + i);
  }
  return credential;
}

TEST(ZlayerDataLink, FormatsAndParsesBack) {
  const std::string text = FormatDataLinkCredential(Sample());
  EXPECT_EQ(text, "00112233-4455-6677-8899-aabbccddeeff.f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");
  const auto parsed = ParseDataLinkCredential(text);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->tunnel_id, Sample().tunnel_id);
  EXPECT_EQ(parsed->secret, Sample().secret);
  // Hex digits in either case.
  std::string upper = text;
  for (std::size_t i = 37; i < upper.size(); ++i)
    upper[i] = static_cast<char>(std::toupper(upper[i]));
  EXPECT_TRUE(ParseDataLinkCredential(upper));
}

TEST(ZlayerDataLink, AnythingElseIsRefused) {
  const std::string good = FormatDataLinkCredential(Sample());
  EXPECT_FALSE(ParseDataLinkCredential(""));
  EXPECT_FALSE(ParseDataLinkCredential(good.substr(0, good.size() - 1)));  // short
  EXPECT_FALSE(ParseDataLinkCredential(good + "0"));                       // long
  std::string no_dot = good;
  no_dot[36] = '-';
  EXPECT_FALSE(ParseDataLinkCredential(no_dot));
  std::string bad_hex = good;
  bad_hex[40] = 'g';
  EXPECT_FALSE(ParseDataLinkCredential(bad_hex));
  std::string bad_id = good;
  bad_id[8] = 'x';  // where the UUID has a hyphen
  EXPECT_FALSE(ParseDataLinkCredential(bad_id));
  EXPECT_FALSE(ParseDataLinkCredential(" " + good.substr(1)));
}

}  // namespace
}  // namespace tunnelkit::zlayer::transport
