// OriginProxy end to end over real sockets on 127.0.0.1: the hello-world origin behind it,
// bodies checked by SHA-256.
#include <fstream>
#include <regex>

#include <gtest/gtest.h>
#include <boost/asio/detached.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/websocket.hpp>

#include "../stream/http_test_client.hpp"
#include "../stream/test_util.hpp"
#include "process.hpp"
#include "process_memory.hpp"
#include "sanitizer.hpp"
#include "tunnelkit/hello/hello_server.hpp"
#include "tunnelkit/origin/origin_proxy.hpp"
#include "tunnelkit/stream/pipe.hpp"
#include "tunnelkit/stream/socket_stream.hpp"
#include "tunnelkit/stream/tls_context.hpp"
#include "tunnelkit/stream/tls_stream.hpp"

namespace tunnelkit::origin {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using asio::awaitable;
using test::RunFor;

Service Svc(const std::string& text) {
  auto s = ParseService(text);
  EXPECT_TRUE(s) << s.message();
  return s.value_or(Service{});
}

std::string PatternSha(std::uint64_t n, std::uint64_t start = 0) {
  test::Sha256 sha;
  std::vector<unsigned char> buf(1 << 16);
  for (std::uint64_t off = 0; off < n;) {
    std::size_t k = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), n - off));
    hello::PatternBytes(start + off, buf.data(), k);
    sha.Update(buf.data(), k);
    off += k;
  }
  return sha.HexFinal();
}

class OriginProxyTest : public ::testing::Test {
 protected:
  OriginProxyTest() : hello_(io_, {asio::ip::make_address("127.0.0.1"), 0}) { hello_.Start(); }

  std::string HelloUrl() {
    return "http://127.0.0.1:" + std::to_string(hello_.local_endpoint().port());
  }

  // A proxy for `router`, serving style (a) on one end of a TCP pair; returns the client end.
  std::unique_ptr<TcpStream> Connect(OriginProxy& proxy, ClientInfo info = {"192.0.2.7", "https"}) {
    auto [c, s] = test::TcpPair(io_);
    auto server = std::make_shared<TcpStream>(std::move(s));
    asio::co_spawn(
        io_,
        [&proxy, server, info]() -> awaitable<void> {
          co_await proxy.ServeHttpStream(*server, info);
        },
        asio::detached);
    return std::make_unique<TcpStream>(std::move(c));
  }

  asio::io_context io_;
  hello::HelloServer hello_;
};

TEST_F(OriginProxyTest, DownloadAndKeepAliveReuseThePool) {
  OriginProxy proxy(io_.get_executor(), Router::CatchAll(Svc(HelloUrl())));
  auto client = Connect(proxy);
  RunFor(io_, [&]() -> awaitable<void> {
    boost::beast::flat_buffer buf;
    const std::uint64_t n = 20'000'003;
    auto r = co_await test::DoRequest(*client, buf, http::verb::get, "/bytes/20000003", "app.test");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body_size, n);
    EXPECT_EQ(r.body_sha256, PatternSha(n));
    EXPECT_EQ(r.headers[http::field::content_length], "20000003");
    auto again = co_await test::DoRequest(*client, buf, http::verb::get, "/", "app.test");
    EXPECT_EQ(again.status, 200);
  }());
  // The proxy parks the connection right after the response's last byte.
  io_.run_for(std::chrono::milliseconds(100));
  EXPECT_EQ(proxy.stats().origin_connects, 1u);
  EXPECT_EQ(proxy.stats().pooled_reuses, 1u);
  EXPECT_EQ(proxy.pool().IdleCount(), 1u);
}

// A stream that counts the writes made on it (the proxy's client side).
class WriteCountingStream final : public Stream {
 public:
  explicit WriteCountingStream(std::unique_ptr<Stream> inner) : inner_(std::move(inner)) {}
  asio::any_io_executor get_executor() override { return inner_->get_executor(); }
  awaitable<IoResult> ReadSome(asio::mutable_buffer buffer) override {
    co_return co_await inner_->ReadSome(buffer);
  }
  awaitable<IoResult> Write(asio::const_buffer buffer) override {
    ++writes;
    co_return co_await inner_->Write(buffer);
  }
  awaitable<boost::system::error_code> ShutdownWrite() override {
    co_return co_await inner_->ShutdownWrite();
  }
  void Reset() override { inner_->Reset(); }
  std::string Describe() const override { return inner_->Describe(); }
  int writes = 0;

 private:
  std::unique_ptr<Stream> inner_;
};

// A small response arrives whole from the origin; its head and body leave in one write (on a
// multiplexed stream: one frame, not two), and a large one still streams.
TEST_F(OriginProxyTest, SmallResponseLeavesInOneWrite) {
  OriginProxy proxy(io_.get_executor(), Router::CatchAll(Svc(HelloUrl())));
  auto [c, s] = test::TcpPair(io_);
  auto server = std::make_shared<WriteCountingStream>(std::make_unique<TcpStream>(std::move(s)));
  asio::co_spawn(
      io_,
      [&proxy, server, info = ClientInfo{"192.0.2.7", "https"}]() -> awaitable<void> {
        co_await proxy.ServeHttpStream(*server, info);
      },
      asio::detached);
  TcpStream client(std::move(c));
  RunFor(io_, [&]() -> awaitable<void> {
    boost::beast::flat_buffer buf;
    auto r = co_await test::DoRequest(client, buf, http::verb::get, "/bytes/100", "app.test");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body_size, 100u);
    EXPECT_EQ(r.body_sha256, PatternSha(100));
    EXPECT_EQ(server->writes, 1);
    const int before = server->writes;
    r = co_await test::DoRequest(client, buf, http::verb::get, "/bytes/3000000", "app.test");
    EXPECT_EQ(r.body_size, 3'000'000u);
    EXPECT_EQ(r.body_sha256, PatternSha(3'000'000));
    EXPECT_GT(server->writes - before, 2);  // head, then the body as it comes
  }());
}

TEST_F(OriginProxyTest, FiftyMegabyteUploadIsStreamed) {
  OriginProxy proxy(io_.get_executor(), Router::CatchAll(Svc(HelloUrl())));
  auto client = Connect(proxy);
  long before = test::PeakResidentKib();
  RunFor(
      io_,
      [&]() -> awaitable<void> {
        boost::beast::flat_buffer buf;
        for (bool chunked : {false, true}) {
          test::BodyGenerator body;
          body.size = chunked ? 9'000'001 : 50 * 1024 * 1024;
          body.chunked = chunked;
          body.fill = [](std::uint64_t off, unsigned char* out, std::size_t k) {
            hello::PatternBytes(off + 12345, out, k);
          };
          auto r =
              co_await test::DoRequest(*client, buf, http::verb::post, "/echo", "app.test", &body);
          EXPECT_FALSE(r.ec) << r.ec.message();
          EXPECT_EQ(r.status, 200);
          EXPECT_EQ(r.body_size, body.size);
          EXPECT_EQ(r.body_sha256, body.sha256);
          EXPECT_EQ(r.body_sha256, PatternSha(body.size, 12345));
        }
      }(),
      std::chrono::seconds(60));
  long after = test::PeakResidentKib();
  if (test::kAddressSanitizer) GTEST_SKIP() << test::kMemoryBoundUnderAsan;
  // Client, proxy and origin share this process: 50 MB held anywhere would show here.
  EXPECT_LT(after - before, 20 * 1024) << "peak RSS grew by " << (after - before) << " kB";
}

TEST_F(OriginProxyTest, ServerSentEventsAreNotBatched) {
  OriginProxy proxy(io_.get_executor(), Router::CatchAll(Svc(HelloUrl())));
  auto client = Connect(proxy);
  RunFor(io_, [&]() -> awaitable<void> {
    boost::beast::flat_buffer buf;
    auto r = co_await test::DoRequest(*client, buf, http::verb::get, "/sse?n=5", "app.test");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.pieces.size(), 5u);
    if (r.pieces.size() != 5u) co_return;
    for (int i = 0; i < 5; ++i)
      EXPECT_EQ(r.pieces[i], "data: tick " + std::to_string(i + 1) + "\n\n");
    for (int i = 1; i < 5; ++i) {
      auto gap = r.piece_times[i] - r.piece_times[i - 1];
      EXPECT_GE(gap, std::chrono::milliseconds(70)) << "event " << i << " arrived batched";
    }
  }());
}

TEST_F(OriginProxyTest, WebSocketUpgradeIsPassedThrough) {
  OriginProxy proxy(io_.get_executor(), Router::CatchAll(Svc(HelloUrl())));
  auto client = Connect(proxy);
  RunFor(io_, [&]() -> awaitable<void> {
    boost::beast::websocket::stream<StreamRef> ws{StreamRef(*client)};
    co_await ws.async_handshake("app.test", "/ws", asio::use_awaitable);
    for (int size : {5, 200000}) {
      std::string msg(static_cast<std::size_t>(size), 'q');
      msg[0] = 'x';
      co_await ws.async_write(asio::buffer(msg), asio::use_awaitable);
      boost::beast::flat_buffer in;
      co_await ws.async_read(in, asio::use_awaitable);
      EXPECT_EQ(boost::beast::buffers_to_string(in.data()), msg);
    }
    co_await ws.async_close(boost::beast::websocket::close_code::normal, asio::use_awaitable);
  }());
}

TEST_F(OriginProxyTest, RefusedOriginIs502) {
  OriginProxy proxy(io_.get_executor(), Router::CatchAll(Svc("http://127.0.0.1:" +
                                                             std::to_string(test::FreeTcpPort()))));
  auto client = Connect(proxy);
  RunFor(io_, [&]() -> awaitable<void> {
    boost::beast::flat_buffer buf;
    auto r = co_await test::DoRequest(*client, buf, http::verb::get, "/", "app.test");
    EXPECT_EQ(r.status, 502);
    EXPECT_NE(r.body.find("refused"), std::string::npos) << r.body;
  }());
  EXPECT_EQ(proxy.stats().bad_gateway, 1u);
}

TEST_F(OriginProxyTest, SilentOriginIs504) {
  asio::ip::tcp::acceptor silent(io_, {asio::ip::make_address("127.0.0.1"), 0});
  std::vector<asio::ip::tcp::socket> held;
  silent.async_accept([&](boost::system::error_code ec, asio::ip::tcp::socket s) {
    if (!ec) held.push_back(std::move(s));
  });
  OriginOptions options;
  options.response_timeout = std::chrono::milliseconds(300);
  OriginProxy proxy(
      io_.get_executor(),
      Router::CatchAll(Svc("http://127.0.0.1:" + std::to_string(silent.local_endpoint().port())),
                       options));
  auto client = Connect(proxy);
  auto start = std::chrono::steady_clock::now();
  RunFor(io_, [&]() -> awaitable<void> {
    boost::beast::flat_buffer buf;
    auto r = co_await test::DoRequest(*client, buf, http::verb::get, "/", "app.test");
    EXPECT_EQ(r.status, 504);
  }());
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_GE(took, std::chrono::milliseconds(280));
  EXPECT_LT(took, std::chrono::seconds(5));
  EXPECT_EQ(proxy.stats().gateway_timeout, 1u);
}

TEST_F(OriginProxyTest, ForwardedHeadersHostRewriteAndBuiltinServices) {
  Router router;
  OriginOptions rewrite;
  rewrite.http_host_header = "internal.local";
  router.Add({"teapot.test", "", Svc("http_status:418"), {}});
  router.Add({"*.inproc.test", "", Svc("hello_world"), {}});
  router.Add({"", "/headers", Svc(HelloUrl()), rewrite});
  OriginProxy proxy(io_.get_executor(), std::move(router));
  auto client = Connect(proxy);
  RunFor(io_, [&]() -> awaitable<void> {
    boost::beast::flat_buffer buf;
    std::vector<std::pair<std::string, std::string>> xff = {{"X-Forwarded-For", "198.51.100.1"}};
    auto h = co_await test::DoRequest(*client, buf, http::verb::get, "/headers", "public.test",
                                      nullptr, &xff);
    EXPECT_EQ(h.status, 200);
    EXPECT_NE(h.body.find("Host: internal.local\n"), std::string::npos) << h.body;
    EXPECT_NE(h.body.find("X-Forwarded-For: 198.51.100.1, 192.0.2.7\n"), std::string::npos)
        << h.body;
    EXPECT_NE(h.body.find("X-Forwarded-Proto: https\n"), std::string::npos) << h.body;
    auto t = co_await test::DoRequest(*client, buf, http::verb::get, "/", "teapot.test");
    EXPECT_EQ(t.status, 418);
    auto in =
        co_await test::DoRequest(*client, buf, http::verb::get, "/bytes/100000", "x.inproc.test");
    EXPECT_EQ(in.status, 200);
    EXPECT_EQ(in.body_sha256, PatternSha(100000));
    auto none = co_await test::DoRequest(*client, buf, http::verb::get, "/other", "nomatch.test");
    EXPECT_EQ(none.status, 404);
  }());
}

// An https origin: hello served over TlsStream with a self-signed certificate.
TEST_F(OriginProxyTest, HttpsOriginVerifiedWithCaPoolOnly) {
  test::TempDir dir;
  auto cert = test::MakeSelfSignedCert(dir.path());
  auto server_ctx = MakeTlsServerContext({cert.cert, cert.key, "", {}});
  asio::ip::tcp::acceptor acceptor(io_, {asio::ip::make_address("127.0.0.1"), 0});
  asio::co_spawn(
      io_,
      [&]() -> awaitable<void> {
        for (;;) {
          auto socket = co_await acceptor.async_accept(asio::use_awaitable);
          auto tls =
              std::make_shared<TlsStream>(std::move(socket), *server_ctx, TlsStream::Role::kServer);
          asio::co_spawn(
              io_,
              [tls]() -> awaitable<void> {
                if (!co_await tls->Handshake()) co_await hello::ServeConnection(*tls);
              },
              asio::detached);
        }
      },
      asio::detached);
  std::string url = "https://localhost:" + std::to_string(acceptor.local_endpoint().port());
  OriginOptions verified;
  verified.ca_pool = cert.cert;
  Router router;
  router.Add({"good.test", "", Svc(url), verified});
  router.Add({"bad.test", "", Svc(url), {}});
  OriginProxy proxy(io_.get_executor(), std::move(router));
  auto client = Connect(proxy);
  RunFor(io_, [&]() -> awaitable<void> {
    boost::beast::flat_buffer buf;
    auto good =
        co_await test::DoRequest(*client, buf, http::verb::get, "/bytes/777777", "good.test");
    EXPECT_EQ(good.status, 200);
    EXPECT_EQ(good.body_sha256, PatternSha(777777));
    auto bad = co_await test::DoRequest(*client, buf, http::verb::get, "/", "bad.test");
    EXPECT_EQ(bad.status, 502);
    EXPECT_NE(bad.body.find("certificate verify failed"), std::string::npos) << bad.body;
  }());
}

// (b): request head as metadata, body through a stream pair.
class CapturingWriter final : public ResponseWriter {
 public:
  explicit CapturingWriter(Stream& body) : body_(body) {}
  awaitable<boost::system::error_code> WriteHead(const ResponseHead& head) override {
    head_ = head;
    co_return boost::system::error_code{};
  }
  Stream& Body() override { return body_; }
  ResponseHead head_;

 private:
  Stream& body_;
};

TEST_F(OriginProxyTest, StructuredRequestEntry) {
  OriginProxy proxy(io_.get_executor(), Router::CatchAll(Svc(HelloUrl())));
  RunFor(io_, [&]() -> awaitable<void> {
    for (bool upload : {true, false}) {
      auto [tunnel_side, edge_side] = MakeStreamPair(io_.get_executor(), 64 * 1024);
      CapturingWriter writer(*tunnel_side);
      RequestHead head;
      head.host = "app.test";
      const std::uint64_t n = 3'000'017;
      if (upload) {
        head.method = "POST";
        head.target = "/echo";
        head.headers = {{"Content-Length", std::to_string(n)}};
      } else {
        head.target = "/bytes/3000017";
      }
      bool done = false;
      boost::system::error_code result;
      asio::co_spawn(
          io_,
          [&, &ts = tunnel_side]() -> awaitable<void> {
            result = co_await proxy.ForwardRequest(head, *ts, writer);
            done = true;
          },
          asio::detached);
      Stream& edge = *edge_side;
      if (upload) {
        asio::co_spawn(
            io_,
            [&edge]() -> awaitable<void> {
              std::vector<unsigned char> chunk(50000);
              for (std::uint64_t off = 0; off < n;) {
                std::size_t k =
                    static_cast<std::size_t>(std::min<std::uint64_t>(chunk.size(), n - off));
                hello::PatternBytes(off + 7, chunk.data(), k);
                co_await edge.Write(asio::buffer(chunk.data(), k));
                off += k;
              }
              co_await edge.ShutdownWrite();
            },
            asio::detached);
      }
      test::Sha256 sha;
      std::uint64_t got = 0;
      std::vector<char> buf(65536);
      for (;;) {
        IoResult r = co_await edge.ReadSome(asio::buffer(buf));
        if (r.ec) {
          EXPECT_EQ(r.ec, asio::error::eof);
          break;
        }
        sha.Update(buf.data(), r.bytes);
        got += r.bytes;
      }
      EXPECT_EQ(writer.head_.status, 200);
      EXPECT_EQ(got, n);
      EXPECT_EQ(sha.HexFinal(), PatternSha(n, upload ? 7 : 0));
      asio::steady_timer t(io_);
      for (int i = 0; i < 200 && !done; ++i) {
        t.expires_after(std::chrono::milliseconds(5));
        co_await t.async_wait(asio::use_awaitable);
      }
      EXPECT_TRUE(done);
      EXPECT_FALSE(result) << result.message();
    }
  }());
}

// Small uploads racing their responses over pooled connections: the echo answers as soon as
// the body is in, while the proxy's request writer is still finishing. A connection must never
// go back to the pool after the proxy reset it (the next request on it was a 502).
TEST_F(OriginProxyTest, ConcurrentSmallUploadsOverPooledConnectionsAllSucceed) {
  OriginProxy proxy(io_.get_executor(), Router::CatchAll(Svc("hello_world")));
  constexpr int kRounds = 10;
  constexpr int kRequests = 100;
  int ok = 0;
  std::vector<std::string> failures;
  RunFor(io_, [&]() -> awaitable<void> {
    for (int round = 0; round < kRounds; ++round) {
      int finished = 0;
      for (int i = 0; i < kRequests; ++i) {
        asio::co_spawn(
            io_,
            [&, i]() -> awaitable<void> {
              auto [tunnel_side, edge_side] = MakeStreamPair(io_.get_executor(), 64 * 1024);
              std::string body = "request " + std::to_string(i);
              CapturingWriter writer(*tunnel_side);
              RequestHead head;
              head.host = "app.test";
              head.method = "POST";
              head.target = "/echo";
              head.headers = {{"Content-Length", std::to_string(body.size())}};
              // The body arrives a few turns of the loop after the head, as from a network.
              asio::co_spawn(
                  io_,
                  [&io = io_, &edge = *edge_side, &body, turns = i % 7]() -> awaitable<void> {
                    for (int k = 0; k < turns; ++k) co_await asio::post(io, asio::use_awaitable);
                    co_await edge.Write(asio::buffer(body));
                    co_await edge.ShutdownWrite();
                  },
                  asio::detached);
              auto result = co_await proxy.ForwardRequest(head, *tunnel_side, writer);
              std::string got;
              std::vector<char> buf(4096);
              for (;;) {
                IoResult r = co_await edge_side->ReadSome(asio::buffer(buf));
                if (r.ec) {
                  if (r.ec != asio::error::eof) got += "<" + r.ec.message() + ">";
                  break;
                }
                got.append(buf.data(), r.bytes);
              }
              if (!result && writer.head_.status == 200 && got == body) {
                ++ok;
              } else {
                failures.push_back(std::to_string(writer.head_.status) + " [" + result.message() +
                                   "] " + got.substr(0, 120));
              }
              ++finished;
            },
            asio::detached);
      }
      asio::steady_timer t(io_);
      while (finished < kRequests) {
        t.expires_after(std::chrono::milliseconds(1));
        co_await t.async_wait(asio::use_awaitable);
      }
    }
  }());
  EXPECT_EQ(ok, kRounds * kRequests);
  for (std::size_t i = 0; i < std::min<std::size_t>(failures.size(), 3); ++i) {
    ADD_FAILURE() << failures[i];
  }
  EXPECT_EQ(proxy.stats().bad_gateway, 0u);
  EXPECT_GT(proxy.stats().pooled_reuses, 0u);
}

// (c): raw splice to a tcp:// origin that answers with the SHA-256 of what it got.
TEST_F(OriginProxyTest, TcpServiceSplice) {
  asio::ip::tcp::acceptor echo(io_, {asio::ip::make_address("127.0.0.1"), 0});
  asio::co_spawn(
      io_,
      [&]() -> awaitable<void> {
        TcpStream s(co_await echo.async_accept(asio::use_awaitable));
        test::Sha256 sha;
        std::vector<char> buf(65536);
        for (;;) {
          IoResult r = co_await s.ReadSome(asio::buffer(buf));
          if (r.ec) break;
          sha.Update(buf.data(), r.bytes);
        }
        std::string answer = sha.HexFinal();
        co_await s.Write(asio::buffer(answer));
        co_await s.ShutdownWrite();
      },
      asio::detached);
  OriginProxy proxy(io_.get_executor(), Router{});
  auto [c, s] = test::TcpPair(io_);
  TcpStream client(std::move(c)), tunnel(std::move(s));
  SpliceResult spliced;
  bool finished = false;
  asio::co_spawn(
      io_,
      [&]() -> awaitable<void> {
        Service service = Svc("tcp://127.0.0.1:" + std::to_string(echo.local_endpoint().port()));
        spliced = co_await proxy.ServeTcp(tunnel, service);
        finished = true;
      },
      asio::detached);
  const std::uint64_t n = 4'000'000;
  RunFor(io_, [&]() -> awaitable<void> {
    std::vector<unsigned char> data(n);
    hello::PatternBytes(0, data.data(), n);
    co_await client.Write(asio::buffer(data));
    co_await client.ShutdownWrite();
    std::string answer;
    char buf[256];
    for (;;) {
      IoResult r = co_await client.ReadSome(asio::buffer(buf));
      if (r.ec) break;
      answer.append(buf, r.bytes);
    }
    EXPECT_EQ(answer, PatternSha(n));
    asio::steady_timer t(io_);
    for (int i = 0; i < 200 && !finished; ++i) {
      t.expires_after(std::chrono::milliseconds(5));
      co_await t.async_wait(asio::use_awaitable);
    }
  }());
  EXPECT_TRUE(finished);
  EXPECT_EQ(spliced.a_to_b, n);
  EXPECT_EQ(spliced.b_to_a, 64u);
  EXPECT_FALSE(spliced.ec);
}

}  // namespace
}  // namespace tunnelkit::origin
