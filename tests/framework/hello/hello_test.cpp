// The hello-world origin over real TCP sockets, in-process, and as `tunnelctl hello`.
#include <csignal>
#include <regex>

#include <gtest/gtest.h>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/websocket.hpp>

#include "../stream/http_test_client.hpp"
#include "../stream/test_util.hpp"
#include "process.hpp"
#include "tunnelkit/hello/hello_server.hpp"
#include "tunnelkit/stream/socket_stream.hpp"

namespace tunnelkit {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using asio::awaitable;
using test::RunFor;

std::string PatternSha(std::uint64_t n) {
  test::Sha256 sha;
  std::vector<unsigned char> buf(1 << 16);
  for (std::uint64_t off = 0; off < n;) {
    std::size_t k = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), n - off));
    hello::PatternBytes(off, buf.data(), k);
    sha.Update(buf.data(), k);
    off += k;
  }
  return sha.HexFinal();
}

TEST(PatternBytesTest, MatchesTheDocumentedDefinition) {
  unsigned char first[8];
  hello::PatternBytes(0, first, 8);
  // SplitMix64(0) = 0xE220A8397B1DCDAF, little-endian.
  const unsigned char expected[8] = {0xAF, 0xCD, 0x1D, 0x7B, 0x39, 0xA8, 0x20, 0xE2};
  EXPECT_EQ(std::memcmp(first, expected, 8), 0);
  unsigned char whole[40], part[27];
  hello::PatternBytes(0, whole, sizeof whole);
  hello::PatternBytes(5, part, sizeof part);
  EXPECT_EQ(std::memcmp(whole + 5, part, sizeof part), 0);
}

class HelloServerTest : public ::testing::Test {
 protected:
  HelloServerTest() : server_(io_, {asio::ip::make_address("127.0.0.1"), 0}) { server_.Start(); }

  awaitable<std::unique_ptr<TcpStream>> Connect() {
    boost::system::error_code ec;
    auto s = co_await ConnectTcpStream(io_.get_executor(), "127.0.0.1",
                                       std::to_string(server_.local_endpoint().port()),
                                       std::chrono::seconds(5), ec);
    EXPECT_FALSE(ec) << ec.message();
    co_return s;
  }

  asio::io_context io_;
  hello::HelloServer server_;
};

TEST_F(HelloServerTest, IndexBytesStatusOnOneKeepAliveConnection) {
  RunFor(io_, [&]() -> awaitable<void> {
    auto s = co_await Connect();
    boost::beast::flat_buffer buf;
    auto index = co_await test::DoRequest(*s, buf, http::verb::get, "/", "x");
    EXPECT_EQ(index.status, 200);
    EXPECT_NE(index.body.find("Hello from tunnelkit"), std::string::npos);
    const std::uint64_t n = 10'000'019;
    auto bytes = co_await test::DoRequest(*s, buf, http::verb::get, "/bytes/10000019", "x");
    EXPECT_EQ(bytes.status, 200);
    EXPECT_EQ(bytes.body_size, n);
    EXPECT_EQ(bytes.body_sha256, PatternSha(n));
    auto status = co_await test::DoRequest(*s, buf, http::verb::get, "/status/503", "x");
    EXPECT_EQ(status.status, 503);
    auto missing = co_await test::DoRequest(*s, buf, http::verb::get, "/nope", "x");
    EXPECT_EQ(missing.status, 404);
    auto head = co_await test::DoRequest(*s, buf, http::verb::head, "/bytes/123", "x");
    EXPECT_EQ(head.status, 200);
    EXPECT_EQ(head.headers[http::field::content_length], "123");
    EXPECT_EQ(head.body_size, 0u);
    auto again = co_await test::DoRequest(*s, buf, http::verb::get, "/bytes/0", "x");
    EXPECT_EQ(again.status, 200);
    EXPECT_EQ(again.body_size, 0u);
  }());
}

TEST_F(HelloServerTest, EchoStreamsLengthAndChunkedBodies) {
  RunFor(io_, [&]() -> awaitable<void> {
    auto s = co_await Connect();
    boost::beast::flat_buffer buf;
    for (bool chunked : {false, true}) {
      test::BodyGenerator body;
      body.size = 7'000'003;
      body.chunked = chunked;
      body.fill = [](std::uint64_t off, unsigned char* out, std::size_t n) {
        hello::PatternBytes(off + 999, out, n);
      };
      auto r = co_await test::DoRequest(*s, buf, http::verb::post, "/echo", "x", &body);
      EXPECT_FALSE(r.ec) << r.ec.message();
      EXPECT_EQ(r.status, 200);
      EXPECT_EQ(r.body_size, body.size);
      EXPECT_EQ(r.body_sha256, body.sha256);
      EXPECT_EQ(r.headers.count(http::field::content_length), chunked ? 0u : 1u);
    }
  }());
}

TEST_F(HelloServerTest, ServerSentEventsArriveOneByOne) {
  RunFor(io_, [&]() -> awaitable<void> {
    auto s = co_await Connect();
    boost::beast::flat_buffer buf;
    auto r = co_await test::DoRequest(*s, buf, http::verb::get, "/sse?n=4&interval_ms=50", "x");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.headers[http::field::content_type], "text/event-stream");
    EXPECT_EQ(r.pieces.size(), 4u);
    if (r.pieces.size() != 4u) co_return;
    for (int i = 0; i < 4; ++i)
      EXPECT_EQ(r.pieces[i], "data: tick " + std::to_string(i + 1) + "\n\n");
    for (int i = 1; i < 4; ++i) {
      EXPECT_GE(r.piece_times[i] - r.piece_times[i - 1], std::chrono::milliseconds(35));
    }
  }());
}

TEST_F(HelloServerTest, WebSocketEcho) {
  RunFor(io_, [&]() -> awaitable<void> {
    auto s = co_await Connect();
    boost::beast::websocket::stream<StreamRef> ws{StreamRef(*s)};
    co_await ws.async_handshake("x", "/ws", asio::use_awaitable);
    for (std::string msg : {std::string("hello"), std::string(300000, 'z')}) {
      ws.binary(msg.size() > 10);
      co_await ws.async_write(asio::buffer(msg), asio::use_awaitable);
      boost::beast::flat_buffer in;
      co_await ws.async_read(in, asio::use_awaitable);
      EXPECT_EQ(boost::beast::buffers_to_string(in.data()), msg);
      EXPECT_EQ(ws.got_binary(), msg.size() > 10);
    }
    co_await ws.async_close(boost::beast::websocket::close_code::normal, asio::use_awaitable);
  }());
}

TEST_F(HelloServerTest, MalformedRequestClosesOnlyThatConnection) {
  RunFor(io_, [&]() -> awaitable<void> {
    auto bad = co_await Connect();
    std::string junk = "NOT HTTP AT ALL\r\n\r\n";
    co_await bad->Write(asio::buffer(junk));
    char c;
    IoResult r = co_await bad->ReadSome(asio::buffer(&c, 1));
    EXPECT_TRUE(r.ec);
    auto good = co_await Connect();
    boost::beast::flat_buffer buf;
    auto ok = co_await test::DoRequest(*good, buf, http::verb::get, "/", "x");
    EXPECT_EQ(ok.status, 200);
  }());
}

TEST(HelloInProcessTest, ServesOverAnInMemoryStream) {
  asio::io_context io;
  RunFor(io, [&]() -> awaitable<void> {
    auto s = hello::ConnectInProcess(io.get_executor());
    boost::beast::flat_buffer buf;
    auto r = co_await test::DoRequest(*s, buf, http::verb::get, "/bytes/300000", "x");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body_sha256, PatternSha(300000));
  }());
}

TEST(TunnelctlHelloTest, RealProcessAnswersIndex) {
  test::ChildProcess child({TUNNELCTL_PATH, "hello", "--listen", "127.0.0.1:0"});
  ASSERT_TRUE(child.WaitForOutput("hello-world origin listening on http://127.0.0.1:"))
      << child.Output();
  std::smatch m;
  std::string out = child.Output();
  ASSERT_TRUE(std::regex_search(out, m, std::regex("http://127\\.0\\.0\\.1:(\\d+)")));
  int port = std::stoi(m[1]);
  EXPECT_NE(port, 0);
  asio::io_context io;
  RunFor(io, [&]() -> awaitable<void> {
    boost::system::error_code ec;
    auto s = co_await ConnectTcpStream(io.get_executor(), "127.0.0.1", std::to_string(port),
                                       std::chrono::seconds(5), ec);
    EXPECT_FALSE(ec) << ec.message();
    if (ec) co_return;
    boost::beast::flat_buffer buf;
    auto r = co_await test::DoRequest(*s, buf, http::verb::get, "/", "localhost");
    EXPECT_EQ(r.status, 200);
    EXPECT_NE(r.body.find("Hello from tunnelkit"), std::string::npos);
  }());
  EXPECT_EQ(child.Stop(SIGTERM), 0);
}

TEST(TunnelctlHelloTest, BadListenAddressIsAUsageError) {
  auto r = test::RunProcess({TUNNELCTL_PATH, "hello", "--listen", "nonsense"});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_NE(r.err.find("--listen"), std::string::npos);
}

}  // namespace
}  // namespace tunnelkit
