// ChunkedBodyEnd: where a chunked request body ends, fed in any pieces.
#include "server/chunked_body.hpp"

#include <string>

#include <gtest/gtest.h>

namespace tunnelkit::ferro {
namespace {

// Feeds `text` in pieces of `step` bytes; returns how many bytes belonged to the body.
std::size_t FeedInPieces(ChunkedBodyEnd& body, const std::string& text, std::size_t step) {
  std::size_t taken = 0;
  for (std::size_t at = 0; at < text.size() && !body.done() && !body.failed(); at += step) {
    const std::string_view piece = std::string_view(text).substr(at, step);
    const std::size_t n = body.Feed(piece);
    taken += n;
    if (n < piece.size()) break;
  }
  return taken;
}

TEST(ChunkedBodyEnd, FindsTheEndInAnyPieces) {
  const std::string body =
      "5;name=value\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nTrailer: x\r\n\r\n";
  for (std::size_t step : {1u, 2u, 3u, 7u, 64u, 1000u}) {
    SCOPED_TRACE(step);
    ChunkedBodyEnd end;
    EXPECT_EQ(FeedInPieces(end, body + "GET /next", step), body.size());
    EXPECT_TRUE(end.done());
    EXPECT_FALSE(end.failed());
  }
  ChunkedBodyEnd empty;
  EXPECT_EQ(empty.Feed("0\r\n\r\n"), 5u);
  EXPECT_TRUE(empty.done());
}

TEST(ChunkedBodyEnd, NotDoneBeforeTheLastLine) {
  ChunkedBodyEnd end;
  EXPECT_EQ(end.Feed("3\r\nabc\r\n0\r\n"), 11u);
  EXPECT_FALSE(end.done());
  EXPECT_EQ(end.Feed("\r\n"), 2u);
  EXPECT_TRUE(end.done());
}

TEST(ChunkedBodyEnd, RefusesMalformedBodies) {
  for (const std::string& bad :
       {std::string("x\r\n"), std::string("\r\n"), std::string("3\r\nabcX"), std::string("3\nabc"),
        std::string("1234567890abcdef0\r\n"), "1;" + std::string(ChunkedBodyEnd::kMaxLine + 1, 'e'),
        std::string("0\r\nbad\ntrailer")}) {
    ChunkedBodyEnd end;
    FeedInPieces(end, bad, 5);
    EXPECT_TRUE(end.failed()) << bad.substr(0, 40);
    EXPECT_FALSE(end.done());
  }
}

}  // namespace
}  // namespace tunnelkit::ferro
