#include "tunnelkit/result.hpp"

#include <memory>
#include <string>

#include <gtest/gtest.h>

namespace tunnelkit {
namespace {

Result<int> ParseDigit(char c) {
  if (c < '0' || c > '9') return Error::Invalid(std::string("not a digit: ") + c);
  return c - '0';
}

Result<int> SumOfDigits(std::string_view text) {
  if (text.size() > 4) return Error::TooLarge("more than 4 digits");
  int sum = 0;
  for (char c : text) {
    auto digit = ParseDigit(c);
    if (!digit) return digit.error().Prefixed("digits: ");
    sum += *digit;
  }
  return sum;
}

TEST(Result, CarriesTheValue) {
  auto sum = SumOfDigits("123");
  ASSERT_TRUE(sum.ok());
  EXPECT_TRUE(static_cast<bool>(sum));
  EXPECT_EQ(*sum, 6);
  EXPECT_EQ(sum.value_or(-1), 6);
}

TEST(Result, CarriesKindAndMessageAndPassesThemOn) {
  auto sum = SumOfDigits("1x3");
  ASSERT_FALSE(sum.ok());
  EXPECT_EQ(sum.kind(), ErrorKind::kInvalid);
  EXPECT_EQ(sum.message(), "digits: not a digit: x");
  EXPECT_EQ(sum.value_or(-1), -1);

  auto big = SumOfDigits("12345");
  ASSERT_FALSE(big);
  EXPECT_EQ(big.kind(), ErrorKind::kTooLarge);
  EXPECT_EQ(ToString(big.kind()), "too large");
}

TEST(Result, UsingAFailedValueIsAProgrammingErrorNotUndefinedBehaviour) {
  auto sum = SumOfDigits("x");
  EXPECT_THROW(static_cast<void>(*sum), BadResultAccess);
  auto ok = SumOfDigits("1");
  EXPECT_THROW(static_cast<void>(ok.error()), std::logic_error);
}

TEST(Result, MovesOnlyValuesThrough) {
  auto make = [](bool good) -> Result<std::unique_ptr<int>> {
    if (!good) return Error::NotFound("nothing");
    return std::make_unique<int>(7);
  };
  auto owned = make(true);
  ASSERT_TRUE(owned);
  std::unique_ptr<int> taken = std::move(owned).value();
  EXPECT_EQ(*taken, 7);
  EXPECT_EQ(make(false).kind(), ErrorKind::kNotFound);
}

TEST(Result, ConvertsFromValuesTheTypeCanBeMadeFrom) {
  Result<std::string> text = "literal";
  ASSERT_TRUE(text);
  EXPECT_EQ(text->size(), 7u);
}

TEST(Result, VoidResultIsSuccessOrAnError) {
  auto check = [](bool good) -> Result<void> {
    if (!good) return Error::Io("bind 127.0.0.1:1: permission denied");
    return {};
  };
  EXPECT_TRUE(check(true).ok());
  auto failed = check(false);
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.kind(), ErrorKind::kIo);
  EXPECT_EQ(failed.message(), "bind 127.0.0.1:1: permission denied");
  EXPECT_THROW(static_cast<void>(check(true).error()), std::logic_error);
}

}  // namespace
}  // namespace tunnelkit
