// HTTP heads as ConnectRequest/ConnectResponse metadata, and reading/writing the head of a data
// stream over an in-memory stream pair.
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

#include "quic_test_env.hpp"
#include "tunnelkit/cloudflare/wire/codec/http_metadata.hpp"
#include "tunnelkit/cloudflare/wire/stream/connect_stream.hpp"
#include "tunnelkit/stream/pipe.hpp"
#include "tunnelkit/stream/prefixed_stream.hpp"

namespace tunnelkit::cloudflare {
namespace {
namespace asio = boost::asio;

TEST(HttpMetadata, RequestRoundTripKeepsRepeatedHeadersInOrder) {
  HttpRequestMeta request{
      "POST", "a.trycloudflare.com", {{"Accept", "*/*"}, {"X-Many", "1"}, {"X-Many", "2"}}};
  auto metadata = EncodeRequestMetadata(request);
  ASSERT_EQ(metadata.size(), 5u);
  EXPECT_EQ(metadata[0], (MetadataEntry{"HttpMethod", "POST"}));
  EXPECT_EQ(metadata[1], (MetadataEntry{"HttpHost", "a.trycloudflare.com"}));
  EXPECT_EQ(metadata[3], (MetadataEntry{"HttpHeader:X-Many", "1"}));
  HttpRequestMeta decoded;
  ASSERT_EQ(DecodeRequestMetadata(metadata, decoded), "");
  EXPECT_EQ(decoded.method, "POST");
  EXPECT_EQ(decoded.host, "a.trycloudflare.com");
  EXPECT_EQ(decoded.headers, request.headers);
}

TEST(HttpMetadata, RequestIgnoresUnknownKeysAndNeedsAMethod) {
  HttpRequestMeta decoded;
  EXPECT_EQ(DecodeRequestMetadata({{"HttpMethod", "GET"}, {"FlowID", "7"}}, decoded), "");
  EXPECT_NE(DecodeRequestMetadata({{"HttpHost", "x"}}, decoded).find("no HttpMethod"),
            std::string::npos);
}

TEST(HttpMetadata, RefusesHeaderSmuggling) {
  HttpRequestMeta decoded;
  auto two_colons =
      DecodeRequestMetadata({{"HttpMethod", "GET"}, {"HttpHeader:A:B", "x"}}, decoded);
  EXPECT_NE(two_colons.find("more than one ':'"), std::string::npos) << two_colons;
  EXPECT_NE(
      DecodeRequestMetadata({{"HttpMethod", "GET"}, {"HttpHeader:X", "a\r\nEvil: 1"}}, decoded),
      "");
  EXPECT_NE(DecodeRequestMetadata({{"HttpMethod", "GET"}, {"HttpHeader:Bad Name", "a"}}, decoded),
            "");
  EXPECT_NE(DecodeRequestMetadata({{"HttpMethod", "GET /x HTTP/1.1\r\n"}}, decoded), "");
  EXPECT_NE(DecodeRequestMetadata({{"HttpMethod", "GET"}, {"HttpHost", "a/b"}}, decoded), "");
}

TEST(HttpMetadata, ResponseStatusMustBeThreeDigits) {
  HttpResponseMeta response{404, {{"Content-Type", "text/plain"}}};
  HttpResponseMeta decoded;
  ASSERT_EQ(DecodeResponseMetadata(EncodeResponseMetadata(response), decoded), "");
  EXPECT_EQ(decoded.status, 404);
  EXPECT_EQ(decoded.headers, response.headers);
  for (const char* bad : {"20", "2000", "abc", "099", ""}) {
    EXPECT_NE(DecodeResponseMetadata({{"HttpStatus", bad}}, decoded), "") << bad;
  }
  EXPECT_NE(DecodeResponseMetadata({}, decoded), "");
}

// Reasons quote the peer's bytes: they stay one line (no CR/LF/control bytes) and short.
TEST(HttpMetadata, ErrorsStayOneLine) {
  HttpResponseMeta response;
  HttpRequestMeta request;
  const std::string status_error = DecodeResponseMetadata({{"HttpStatus", "20\n"}}, response);
  const std::string name_error =
      DecodeRequestMetadata({{"HttpMethod", "GET"}, {"HttpHeader:a\r\nb", "v"}}, request);
  const std::string value_error = DecodeRequestMetadata(
      {{"HttpMethod", "GET"}, {"HttpHeader:X\n" + std::string(200, 'k'), "v\n"}}, request);
  for (const std::string& error : {status_error, name_error, value_error}) {
    EXPECT_NE(error, "");
    EXPECT_EQ(error.find_first_of("\r\n"), std::string::npos) << error;
    EXPECT_LT(error.size(), 160u) << error;
  }
}

TEST(HttpMetadata, DestParts) {
  EXPECT_EQ(TargetFromDest("https://a.b/p/q?x=1"), "/p/q?x=1");
  EXPECT_EQ(TargetFromDest("https://a.b"), "/");
  EXPECT_EQ(TargetFromDest("https://a.b?x"), "/?x");
  EXPECT_EQ(TargetFromDest("/only/path"), "/only/path");
  EXPECT_EQ(HostFromDest("https://a.b:8443/x"), "a.b");
  EXPECT_EQ(HostFromDest("a.b:22"), "a.b");
  EXPECT_EQ(HostFromDest("[::1]:22"), "::1");
  EXPECT_EQ(HostFromDest("a.b"), "a.b");
}

TEST(ConnectStream, RequestHeadThenBodyArriveThroughAPrefixedStream) {
  asio::io_context io;
  quic::test::RunWithDeadline(io, [&]() -> asio::awaitable<void> {
    auto [edge, client] = MakeStreamPair(io.get_executor());
    ConnectRequest request{"https://h.example/upload", ConnectionType::kHttp,
                           EncodeRequestMetadata({"POST", "h.example", {{"Content-Length", "5"}}})};
    // Head and body written back to back: the reader gets both in one read and must hand the
    // body bytes on.
    auto ec = co_await WriteConnectRequest(*edge, request);
    EXPECT_FALSE(ec);
    std::string body = "hello";
    co_await edge->Write(asio::buffer(body));
    co_await edge->ShutdownWrite();
    auto opening = co_await ReadStreamOpening(*client, MetadataLimits{});
    EXPECT_EQ(opening.error, "");
    EXPECT_EQ(opening.kind, StreamKind::kData);
    EXPECT_EQ(opening.request, request);
    PrefixedStream rest(*client, std::move(opening.leftover));
    EXPECT_EQ(co_await quic::test::ReadAll(rest), "hello");
  });
}

TEST(ConnectStream, ResponseHead) {
  asio::io_context io;
  quic::test::RunWithDeadline(io, [&]() -> asio::awaitable<void> {
    auto [client, edge] = MakeStreamPair(io.get_executor());
    ConnectResponse response{"", EncodeResponseMetadata({200, {{"Content-Length", "2"}}})};
    co_await WriteConnectResponse(*client, response);
    std::string body = "ok";
    co_await client->Write(asio::buffer(body));
    co_await client->ShutdownWrite();
    auto opening = co_await ReadResponseOpening(*edge, MetadataLimits{});
    EXPECT_EQ(opening.error, "");
    EXPECT_EQ(opening.response, response);
    PrefixedStream rest(*edge, std::move(opening.leftover));
    EXPECT_EQ(co_await quic::test::ReadAll(rest), "ok");
  });
}

TEST(ConnectStream, RpcSignatureStopsAfterSixBytes) {
  asio::io_context io;
  quic::test::RunWithDeadline(io, [&]() -> asio::awaitable<void> {
    auto [edge, client] = MakeStreamPair(io.get_executor());
    std::vector<std::uint8_t> bytes(kRpcStreamSignature.begin(), kRpcStreamSignature.end());
    bytes.push_back(0x00);
    co_await edge->Write(asio::buffer(bytes));
    auto opening = co_await ReadStreamOpening(*client, MetadataLimits{});
    EXPECT_EQ(opening.error, "");
    EXPECT_EQ(opening.kind, StreamKind::kRpc);
  });
}

TEST(ConnectStream, MalformedHeadsGiveOneLineErrors) {
  asio::io_context io;
  quic::test::RunWithDeadline(io, [&]() -> asio::awaitable<void> {
    {
      auto [edge, client] = MakeStreamPair(io.get_executor());
      std::string junk = "GET / HTTP/1.1\r\n\r\n";
      co_await edge->Write(asio::buffer(junk));
      auto opening = co_await ReadStreamOpening(*client, MetadataLimits{});
      EXPECT_NE(opening.error, "");
      EXPECT_EQ(opening.error.find('\n'), std::string::npos);
    }
    {
      // A segment table that announces more than the limit: refused before reading it all.
      auto [edge, client] = MakeStreamPair(io.get_executor());
      auto preamble = EncodeDataPreamble();
      std::vector<std::uint8_t> bytes(preamble.begin(), preamble.end());
      for (int b : {0, 0, 0, 0, 0, 0, 0, 1}) bytes.push_back(static_cast<std::uint8_t>(b));
      co_await edge->Write(asio::buffer(bytes));
      MetadataLimits small;
      small.max_message_bytes = 1024;
      auto opening = co_await ReadStreamOpening(*client, small);
      EXPECT_NE(opening.error, "");
    }
    {
      auto [edge, client] = MakeStreamPair(io.get_executor());
      auto preamble = EncodeDataPreamble();
      co_await edge->Write(asio::buffer(preamble.data(), 7));
      co_await edge->ShutdownWrite();
      auto opening = co_await ReadStreamOpening(*client, MetadataLimits{});
      EXPECT_NE(opening.error.find("preamble"), std::string::npos) << opening.error;
    }
  });
}

}  // namespace
}  // namespace tunnelkit::cloudflare
