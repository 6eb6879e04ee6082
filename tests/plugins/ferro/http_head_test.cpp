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

}  // namespace
}  // namespace tunnelkit::ferro
