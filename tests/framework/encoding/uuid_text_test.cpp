// UUID text: the one format every backend writes and reads.
#include <gtest/gtest.h>

#include "tunnelkit/uuid_text.hpp"

namespace tunnelkit::uuid {
namespace {

constexpr Bytes kSample = {0x12, 0x3e, 0x45, 0x67, 0xe8, 0x9b, 0x12, 0xd3,
                           0xa4, 0x56, 0x42, 0x66, 0x14, 0x17, 0x40, 0x00};

TEST(UuidTextTest, FormatsLowerCaseWithHyphens) {
  EXPECT_EQ(Format(kSample), "123e4567-e89b-12d3-a456-426614174000");
}

TEST(UuidTextTest, ParsesEitherCaseAndRoundTrips) {
  for (const char* text :
       {"123e4567-e89b-12d3-a456-426614174000", "123E4567-E89B-12D3-A456-426614174000"}) {
    auto parsed = Parse(text);
    ASSERT_TRUE(parsed) << text << ": " << parsed.message();
    EXPECT_EQ(*parsed, kSample) << text;
  }
  auto parsed = Parse(Format(kSample));
  ASSERT_TRUE(parsed);
  EXPECT_EQ(*parsed, kSample);
}

TEST(UuidTextTest, RefusesOtherShapes) {
  for (const char* bad :
       {"", "123e4567e89b12d3a456426614174000", "123e4567-e89b-12d3-a456-42661417400",
        "123e4567-e89b-12d3-a456-4266141740000", "123e4567+e89b-12d3-a456-426614174000",
        "123e4567-e89b-12d3-a456-42661417400g", "{23e4567-e89b-12d3-a456-426614174000"}) {
    auto parsed = Parse(bad);
    EXPECT_FALSE(parsed) << bad;
    if (!parsed) {
      EXPECT_EQ(parsed.kind(), ErrorKind::kInvalid) << bad;
    }
  }
}

}  // namespace
}  // namespace tunnelkit::uuid
