// The server's HTTP/1.1 head handling: which exchanges keep the public connection open.
#include "server/http_head.hpp"

#include <gtest/gtest.h>

namespace tunnelkit::ferro {
namespace {

RequestHead Request(const std::string& text) {
  std::string error;
  auto head = ParseRequestHead(text, error);
  EXPECT_TRUE(head) << error;
  return head.value_or(RequestHead{});
}

ResponseHead Response(const std::string& text) {
  std::string error;
  auto head = ParseResponseHead(text, error);
  EXPECT_TRUE(head) << error;
  return head.value_or(ResponseHead{});
}

TEST(HttpHead, BodilessHttp11RequestsKeepTheConnection) {
  EXPECT_TRUE(Request("GET / HTTP/1.1\r\nHost: a\r\n\r\n").CanKeepAlive());
  EXPECT_TRUE(Request("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n").CanKeepAlive());
  EXPECT_FALSE(Request("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n").CanKeepAlive());
  EXPECT_FALSE(Request("GET / HTTP/1.0\r\nHost: a\r\n\r\n").CanKeepAlive());
  EXPECT_FALSE(Request("POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n").CanKeepAlive());
  EXPECT_FALSE(Request("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").CanKeepAlive());
  EXPECT_FALSE(Request("GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n").CanKeepAlive());
  EXPECT_FALSE(
      Request("GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n").CanKeepAlive());
  EXPECT_FALSE(Request("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n").CanKeepAlive());
}

TEST(HttpHead, ParsesResponseHeads) {
  const auto r = Response("HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nX-A: b\r\n\r\n");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.version, "HTTP/1.1");
  EXPECT_EQ(r.status_line, "HTTP/1.1 404 Not Found");
  ASSERT_EQ(r.headers.size(), 2u);
  EXPECT_EQ(Response("HTTP/1.1 200\r\n\r\n").status, 200);  // empty reason phrase
  std::string error;
  EXPECT_FALSE(ParseResponseHead("HTTP/2 200 OK\r\n\r\n", error));
  EXPECT_FALSE(ParseResponseHead("HTTP/1.1 2x0 OK\r\n\r\n", error));
  EXPECT_FALSE(ParseResponseHead("HTTP/1.1 200OK\r\n\r\n", error));
  EXPECT_FALSE(ParseResponseHead("HTTP/1.1 200 OK\r\nbad line\r\n\r\n", error));
}

TEST(HttpHead, SelfDelimitedResponses) {
  EXPECT_TRUE(Response("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n").IsSelfDelimited("GET"));
  EXPECT_EQ(Response("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n").BodyLength("GET"), 5);
  EXPECT_TRUE(Response("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
                  .IsSelfDelimited("GET"));
  EXPECT_EQ(Response("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").BodyLength("GET"),
            std::nullopt);
  EXPECT_TRUE(Response("HTTP/1.1 204 No Content\r\n\r\n").IsSelfDelimited("GET"));
  EXPECT_TRUE(Response("HTTP/1.1 200 OK\r\n\r\n").IsSelfDelimited("HEAD"));
  EXPECT_EQ(Response("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n").BodyLength("HEAD"), 0);
  // Close-delimited, interim, upgrade, or an unreadable length: the connection ends after it.
  EXPECT_FALSE(Response("HTTP/1.1 200 OK\r\n\r\n").IsSelfDelimited("GET"));
  EXPECT_FALSE(
      Response("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n").IsSelfDelimited("GET"));
  EXPECT_FALSE(Response("HTTP/1.1 100 Continue\r\n\r\n").IsSelfDelimited("GET"));
  EXPECT_FALSE(
      Response("HTTP/1.1 101 Switching\r\nContent-Length: 0\r\n\r\n").IsSelfDelimited("GET"));
  EXPECT_FALSE(Response("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n")
                   .IsSelfDelimited("GET"));
}

TEST(HttpHead, KeptAliveResponseDropsConnectionHeaders) {
  const auto r = Response(
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\nKeep-Alive: timeout=5\r\n"
      "X-Kept: yes\r\n\r\n");
  EXPECT_EQ(SerializeKeptAliveResponseHead(r),
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Kept: yes\r\n\r\n");
}

TEST(HttpHead, ForwardedRequestNamesTheClientAndClosesAfterTheExchange) {
  const auto r = Request(
      "GET /a?b HTTP/1.1\r\nHost: web\r\nX-Forwarded-For: 10.0.0.1\r\nConnection: keep-alive\r\n"
      "x-forwarded-for: 10.0.0.2\r\nAccept: */*\r\n\r\n");
  // The first X-Forwarded-For gains the client; later ones and the connection headers go.
  EXPECT_EQ(SerializeRequestHead(r, true, "127.0.0.1"),
            "GET /a?b HTTP/1.1\r\nHost: web\r\nAccept: */*\r\n"
            "X-Forwarded-For: 10.0.0.1, 127.0.0.1\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(SerializeRequestHead(Request("GET / HTTP/1.1\r\nHost: web\r\n\r\n"), false, "::1"),
            "GET / HTTP/1.1\r\nHost: web\r\nX-Forwarded-For: ::1\r\n\r\n");
  // Neither a client address nor a close: the request goes as it came.
  EXPECT_EQ(SerializeRequestHead(r, false, ""),
            "GET /a?b HTTP/1.1\r\nHost: web\r\nX-Forwarded-For: 10.0.0.1\r\n"
            "Connection: keep-alive\r\nx-forwarded-for: 10.0.0.2\r\nAccept: */*\r\n\r\n");
}

TEST(HttpHead, RepeatedHostIsRefused) {
  std::string error;
  EXPECT_FALSE(ParseRequestHead("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", error));
  EXPECT_EQ(error, "repeated Host header");
  EXPECT_FALSE(ParseIncomingRequestHead("GET / HTTP/1.1\r\nHost: a\r\nHOST: a\r\n\r\n", error));
  EXPECT_TRUE(ParseIncomingRequestHead("GET / HTTP/1.1\r\nHost: a\r\n\r\n", error)) << error;
}

// A head of `headers` lines "hN:v" (no space after the colon: each gains one when forwarded),
// padded by a last header so that the head is `bytes` long when `bytes` is given.
std::string HeadOf(std::size_t headers, std::size_t bytes = 0) {
  std::string head = "POST /p HTTP/1.1\r\nHost: app\r\n";
  for (std::size_t i = 1; i + 1 < headers; ++i) head += "h" + std::to_string(i) + ":v\r\n";
  const std::string last = "x-pad:";
  const std::size_t fixed = head.size() + last.size() + 4;
  head += last + std::string(bytes > fixed ? bytes - fixed : 1, 'p') + "\r\n\r\n";
  return head;
}

// What the server forwards, the next parser accepts: every head the ingress takes, once
// serialized (with the largest client address and the close), parses again. The ingress
// leaves room for the lines and bytes serialization adds.
TEST(HttpHead, ForwardedHeadsParseAgain) {
  const std::string address = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255";  // 45 bytes
  std::size_t accepted = 0;
  for (std::size_t n = kMaxRequestHeaders - 4; n <= kMaxRequestHeaders + 2; ++n) {
    for (std::size_t bytes : {std::size_t{0}, kMaxRequestHead - kAddedHeadBytes,
                              kMaxRequestHead - 100, kMaxRequestHead}) {
      SCOPED_TRACE(std::to_string(n) + " headers, " + std::to_string(bytes) + " bytes");
      const std::string text = HeadOf(n, bytes);
      std::string error;
      const auto head = ParseIncomingRequestHead(text, error);
      if (!head) continue;
      ++accepted;
      for (bool close : {true, false}) {
        const std::string forwarded = SerializeRequestHead(*head, close, address);
        EXPECT_TRUE(ParseRequestHead(forwarded, error))
            << error << " (" << forwarded.size() << " bytes)";
      }
    }
  }
  EXPECT_GT(accepted, 0u);
  std::string error;
  // The ingress's limits, exactly.
  EXPECT_TRUE(ParseIncomingRequestHead(HeadOf(kMaxRequestHeaders - kAddedHeaderLines), error));
  EXPECT_FALSE(ParseIncomingRequestHead(HeadOf(kMaxRequestHeaders - kAddedHeaderLines + 1), error));
  EXPECT_EQ(error, "too many headers");
  EXPECT_TRUE(ParseIncomingRequestHead(HeadOf(10, kMaxRequestHead - kAddedHeadBytes), error));
  EXPECT_FALSE(ParseIncomingRequestHead(HeadOf(10, kMaxRequestHead - kAddedHeadBytes + 1), error));
  // The plain parser takes the full limits (what forwarding produces).
  EXPECT_TRUE(ParseRequestHead(HeadOf(kMaxRequestHeaders), error)) << error;
  EXPECT_FALSE(ParseRequestHead(HeadOf(kMaxRequestHeaders + 1), error));
}

TEST(HttpHead, RequestBodyFraming) {
  using Kind = BodyFraming::Kind;
  EXPECT_EQ(Request("GET / HTTP/1.1\r\n\r\n").Body().kind, Kind::kNone);
  EXPECT_EQ(Request("GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n").Body().kind, Kind::kNone);
  const auto sized = Request("POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n").Body();
  EXPECT_EQ(sized.kind, Kind::kLength);
  EXPECT_EQ(sized.length, 12);
  EXPECT_EQ(Request("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").Body().kind,
            Kind::kChunked);
  for (const char* ambiguous :
       {"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: -3\r\n\r\n"}) {
    EXPECT_EQ(Request(ambiguous).Body().kind, Kind::kInvalid) << ambiguous;
  }
}

}  // namespace
}  // namespace tunnelkit::ferro
