// The client's side of edge-opened streams over real QUIC on loopback: the test plays the edge
// (it opens streams on the server side of a QuicServer/QuicClient pair) and EdgeStreamServer
// serves them through the core OriginProxy to the in-process hello-world origin or a TCP echo.
#include <gtest/gtest.h>

#include <capnp/rpc-twoparty.h>
#include <spdlog/spdlog.h>
#include <boost/algorithm/string/predicate.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/write.hpp>

#include "client/edge_stream_server.hpp"
#include "cloudflare/tunnelrpc.capnp.h"
#include "quic_test_env.hpp"
#include "rpc_stream_calls.hpp"
#include "tunnelkit/cloudflare/wire/codec/http_metadata.hpp"
#include "tunnelkit/cloudflare/wire/kjasio/stream_kj_adapter.hpp"
#include "tunnelkit/cloudflare/wire/rpc/cloudflared_server.hpp"
#include "tunnelkit/cloudflare/wire/stream/connect_stream.hpp"
#include "tunnelkit/metrics/registry.hpp"
#include "tunnelkit/stream/prefixed_stream.hpp"

namespace tunnelkit::cloudflare {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using quic::test::ReadAll;
using quic::test::Sleep;

origin::Router HelloRouter() {
  origin::Service hello;
  hello.kind = origin::Service::Kind::kHelloWorld;
  hello.text = "hello_world";
  return origin::Router::CatchAll(hello);
}

struct Answer {
  std::string error;  // ConnectResponse.error or a read failure
  HttpResponseMeta head;
  std::string body;
  std::vector<std::chrono::steady_clock::time_point> arrivals;  // one per body read
};

// The edge's side of one exchange: request head (+ body, FIN), then the answer until FIN.
asio::awaitable<Answer> Exchange(quic::QuicConnection& edge, ConnectionType type,
                                 HttpRequestMeta meta, std::string target, std::string body = {}) {
  Answer answer;
  auto stream = co_await edge.OpenStream();
  ConnectRequest request{"https://" + meta.host + target, type, EncodeRequestMetadata(meta)};
  co_await WriteConnectRequest(*stream, request);
  // The body goes out while the answer comes in, as on a real edge (an echo would otherwise
  // fill both flow-control windows and stall).
  asio::co_spawn(stream->get_executor(), quic::test::WriteAll(*stream, std::move(body)),
                 asio::detached);
  auto opening = co_await ReadResponseOpening(*stream, MetadataLimits{});
  if (!opening.error.empty()) {
    answer.error = opening.error;
    co_return answer;
  }
  answer.error = opening.response.error;
  if (!answer.error.empty()) co_return answer;
  EXPECT_EQ(DecodeResponseMetadata(opening.response.metadata, answer.head), "");
  PrefixedStream rest(*stream, std::move(opening.leftover));
  std::vector<char> buf(64 * 1024);
  for (;;) {
    auto r = co_await rest.ReadSome(asio::buffer(buf));
    if (r.ec) {
      if (r.ec != asio::error::eof) answer.error = "body: " + r.ec.message();
      break;
    }
    answer.body.append(buf.data(), r.bytes);
    answer.arrivals.push_back(std::chrono::steady_clock::now());
  }
  co_return answer;
}

std::string Header(const HttpResponseMeta& head, std::string_view name) {
  for (const auto& [n, v] : head.headers) {
    if (boost::iequals(n, name)) return v;
  }
  return {};
}

// Runs `body` with an edge connection whose peer (the client) serves streams with `router`
// through an EdgeStreamServer, on `io`. The KJ loop lives in this call (`kj` points at it
// meanwhile); the io_context outlives it, as in the client, where frames left suspended at the
// end are destroyed with the io_context, after the loop.
void RunEdgeAndClient(asio::io_context& io, metrics::Registry& registry, AsioKjLoop*& kj_out,
                      std::function<asio::awaitable<void>(quic::QuicConnection& edge)> body,
                      origin::Router router) {
  AsioKjLoop kj(io);
  kj_out = &kj;
  session::DrainTracker drain(io.get_executor());
  origin::OriginProxy proxy(io.get_executor(), std::move(router));
  EdgeStreamMetrics metrics;
  metrics.tunnel = "t";
  metrics.streams = &registry.AddCounter("streams_total", "s", {"tunnel", "type"});
  metrics.responses = &registry.AddCounter("responses_total", "r", {"tunnel", "code"});
  metrics.bytes_in = registry.AddCounter("in_total", "i", {}).With({});
  metrics.bytes_out = registry.AddCounter("out_total", "o", {}).With({});
  metrics.stream_errors = registry.AddCounter("errors_total", "e", {}).With({});
  EdgeStreamServer::Options options;
  options.head_timeout = 2s;
  options.rpc_timeout = 2s;
  EdgeStreamServer server(proxy, kj, drain, metrics, spdlog::default_logger(), options);
  std::shared_ptr<quic::QuicConnection> edge;
  quic::QuicServer listener(io.get_executor(), quic::test::Loopback(), quic::test::ServerOptions(),
                            [&](std::shared_ptr<quic::QuicConnection> c) { edge = c; });
  quic::test::RunWithDeadline(
      io,
      [&]() -> asio::awaitable<void> {
        auto client = co_await quic::QuicClient::Connect(
            io.get_executor(), listener.local_endpoint(), quic::test::ClientOptions());
        client->SetStreamHandler([&](std::shared_ptr<quic::QuicStream> s) {
          asio::co_spawn(io, server.Serve(std::move(s), 0), asio::detached);
        });
        for (int i = 0; i < 200 && !edge; ++i) co_await Sleep(10ms);
        EXPECT_TRUE(edge);
        if (!edge) co_return;
        co_await body(*edge);
        client->Close();
        listener.Close(0);
      },
      30s);
  kj_out = nullptr;
}

class EdgeStreamServerTest : public ::testing::Test {
 protected:
  // Runs `body` with an edge connection whose peer serves streams with `router`.
  void Run(std::function<asio::awaitable<void>(quic::QuicConnection& edge)> body,
           origin::Router router = HelloRouter()) {
    RunEdgeAndClient(io_, registry_, kj_, std::move(body), std::move(router));
  }
  std::uint64_t Count(const std::string& family_text) {
    std::string exposed = "\n" + registry_.Expose();
    auto at = exposed.find("\n" + family_text + " ");
    if (at == std::string::npos) return 0;
    return std::stoull(exposed.substr(at + family_text.size() + 2));
  }

  asio::io_context io_;
  metrics::Registry registry_;
  AsioKjLoop* kj_ = nullptr;
};

HttpRequestMeta Get(std::string host = "x.trycloudflare.com") {
  return {"GET", std::move(host), {{"Accept", "*/*"}}};
}

TEST_F(EdgeStreamServerTest, GetGoesThroughTheOriginProxy) {
  Run([&](quic::QuicConnection& edge) -> asio::awaitable<void> {
    auto answer = co_await Exchange(edge, ConnectionType::kHttp, Get(), "/status/201");
    EXPECT_EQ(answer.error, "");
    EXPECT_EQ(answer.head.status, 201);
    EXPECT_FALSE(answer.body.empty());
    // The origin sees the host the edge named, https as the forwarded scheme, and the
    // edge's tracing header is stripped.
    auto meta = Get("named.trycloudflare.com");
    meta.headers.emplace_back("Cf-Trace-Id", "abc");
    auto headers = co_await Exchange(edge, ConnectionType::kHttp, meta, "/headers?q=1");
    EXPECT_EQ(headers.head.status, 200);
    EXPECT_NE(headers.body.find("GET /headers?q=1"), std::string::npos) << headers.body;
    EXPECT_NE(headers.body.find("named.trycloudflare.com"), std::string::npos) << headers.body;
    EXPECT_NE(headers.body.find("X-Forwarded-Proto: https"), std::string::npos) << headers.body;
    EXPECT_EQ(headers.body.find("abc"), std::string::npos) << headers.body;
  });
  EXPECT_EQ(Count("responses_total{tunnel=\"t\",code=\"201\"}"), 1u);
  EXPECT_EQ(Count("streams_total{tunnel=\"t\",type=\"http\"}"), 2u);
  EXPECT_GT(Count("out_total"), 0u);
}

TEST_F(EdgeStreamServerTest, PostBodyStreamsBothWays) {
  Run([&](quic::QuicConnection& edge) -> asio::awaitable<void> {
    std::string body = quic::test::Pattern(5 * 1024 * 1024, 7);
    HttpRequestMeta meta{
        "POST", "x.trycloudflare.com", {{"Content-Length", std::to_string(body.size())}}};
    auto answer = co_await Exchange(edge, ConnectionType::kHttp, meta, "/echo", body);
    EXPECT_EQ(answer.error, "");
    EXPECT_EQ(answer.head.status, 200);
    EXPECT_EQ(Header(answer.head, "Content-Length"), std::to_string(body.size()));
    EXPECT_EQ(test::Sha256Hex(answer.body), test::Sha256Hex(body));
  });
  EXPECT_GE(Count("in_total"), 5u * 1024 * 1024);
  EXPECT_GE(Count("out_total"), 5u * 1024 * 1024);
}

TEST_F(EdgeStreamServerTest, ServerSentEventsArriveOneByOne) {
  Run([&](quic::QuicConnection& edge) -> asio::awaitable<void> {
    auto answer = co_await Exchange(edge, ConnectionType::kHttp, Get(), "/sse?n=4&interval_ms=150");
    EXPECT_EQ(answer.head.status, 200);
    EXPECT_EQ(Header(answer.head, "Content-Type").rfind("text/event-stream", 0), 0u);
    EXPECT_NE(answer.body.find("data: tick 4"), std::string::npos) << answer.body;
    // Four events 150 ms apart arrive as (at least) four reads spread over ~450 ms.
    EXPECT_GE(answer.arrivals.size(), 4u);
    if (answer.arrivals.size() >= 4) {
      EXPECT_GE(answer.arrivals.back() - answer.arrivals.front(), 350ms);
    }
  });
}

TEST_F(EdgeStreamServerTest, WebSocketBecomesARawPipeAfter101) {
  Run([&](quic::QuicConnection& edge) -> asio::awaitable<void> {
    auto stream = co_await edge.OpenStream();
    HttpRequestMeta meta{
        "GET", "x.trycloudflare.com", {{"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="}}};
    ConnectRequest request{"https://x.trycloudflare.com/ws", ConnectionType::kWebsocket,
                           EncodeRequestMetadata(meta)};
    co_await WriteConnectRequest(*stream, request);
    auto opening = co_await ReadResponseOpening(*stream, MetadataLimits{});
    EXPECT_EQ(opening.error, "");
    HttpResponseMeta head;
    EXPECT_EQ(DecodeResponseMetadata(opening.response.metadata, head), "");
    EXPECT_EQ(head.status, 101);
    EXPECT_EQ(Header(head, "Sec-WebSocket-Accept"), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    EXPECT_EQ(Header(head, "Upgrade"), "websocket");
    EXPECT_EQ(Header(head, "Connection"), "Upgrade");
    // A masked text frame "hi" goes out; the echo comes back unmasked.
    std::vector<std::uint8_t> frame = {0x81, 0x82, 1, 2, 3, 4, 'h' ^ 1, 'i' ^ 2};
    co_await stream->Write(asio::buffer(frame));
    PrefixedStream rest(*stream, std::move(opening.leftover));
    std::string got;
    std::vector<char> buf(64);
    while (got.size() < 4) {
      auto r = co_await rest.ReadSome(asio::buffer(buf));
      if (r.ec) break;
      got.append(buf.data(), r.bytes);
    }
    EXPECT_EQ(got, std::string("\x81\x02hi", 4));
    stream->Reset();
  });
}

TEST_F(EdgeStreamServerTest, OriginDownBecomesAConnectResponseError) {
  auto service = origin::ParseService("http://127.0.0.1:" + std::to_string(test::FreeTcpPort()));
  ASSERT_TRUE(service) << service.message();
  Run(
      [&](quic::QuicConnection& edge) -> asio::awaitable<void> {
        auto answer = co_await Exchange(edge, ConnectionType::kHttp, Get(), "/");
        EXPECT_EQ(answer.error.rfind("Unable to reach the origin service", 0), 0u) << answer.error;
        EXPECT_EQ(answer.body, "");
      },
      origin::Router::CatchAll(*service));
}

TEST_F(EdgeStreamServerTest, TcpStreamIsAcknowledgedThenSpliced) {
  asio::ip::tcp::acceptor echo(io_, {asio::ip::make_address("127.0.0.1"), 0});
  asio::co_spawn(
      io_,
      [&]() -> asio::awaitable<void> {
        auto socket = co_await echo.async_accept(asio::use_awaitable);
        std::vector<char> buf(4096);
        boost::system::error_code ec;
        for (;;) {
          std::size_t n = co_await socket.async_read_some(
              asio::buffer(buf), asio::redirect_error(asio::use_awaitable, ec));
          if (ec) break;
          co_await asio::async_write(socket, asio::buffer(buf.data(), n),
                                     asio::redirect_error(asio::use_awaitable, ec));
        }
        socket.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
      },
      asio::detached);
  auto service =
      origin::ParseService("tcp://127.0.0.1:" + std::to_string(echo.local_endpoint().port()));
  ASSERT_TRUE(service) << service.message();
  Run(
      [&](quic::QuicConnection& edge) -> asio::awaitable<void> {
        auto stream = co_await edge.OpenStream();
        ConnectRequest request{"x.trycloudflare.com:22", ConnectionType::kTcp, {}};
        co_await WriteConnectRequest(*stream, request);
        co_await quic::test::WriteAll(*stream, "ping over tcp");
        auto opening = co_await ReadResponseOpening(*stream, MetadataLimits{});
        EXPECT_EQ(opening.error, "");
        EXPECT_EQ(opening.response.error, "");
        PrefixedStream rest(*stream, std::move(opening.leftover));
        EXPECT_EQ(co_await ReadAll(rest), "ping over tcp");
      },
      origin::Router::CatchAll(*service));
}

TEST_F(EdgeStreamServerTest, TcpStreamToAnHttpServiceIsRefused) {
  Run([&](quic::QuicConnection& edge) -> asio::awaitable<void> {
    auto stream = co_await edge.OpenStream();
    ConnectRequest request{"x.trycloudflare.com:22", ConnectionType::kTcp, {}};
    co_await WriteConnectRequest(*stream, request);
    co_await stream->ShutdownWrite();
    auto opening = co_await ReadResponseOpening(*stream, MetadataLimits{});
    EXPECT_EQ(opening.error, "");
    EXPECT_NE(opening.response.error.find("not a TCP service"), std::string::npos)
        << opening.response.error;
  });
}

// The client's RPC stream server is still waiting for the stream to end when the test ends and
// the KJ loop goes away; its frame is destroyed later, with the io_context. It used to leak its
// RPC session then (the frame could not destroy KJ objects without their loop), and with it the
// QUIC stream and the client's whole QuicConnection. The loop now owns such sessions.
TEST(EdgeStreamServerLifetime, RpcStreamsLeaveNoQuicConnectionBehindAfterTheLoopIsGone) {
  ASSERT_EQ(quic::QuicConnection::live(), 0u);
  for (int cycle = 0; cycle < 20; ++cycle) {
    {
      asio::io_context io;
      metrics::Registry registry;
      AsioKjLoop* kj = nullptr;
      RunEdgeAndClient(
          io, registry, kj,
          [&](quic::QuicConnection& edge) -> asio::awaitable<void> {
            co_await quic::test::CallCloudflaredServer(edge, *kj);
          },
          HelloRouter());
    }
    ASSERT_EQ(quic::QuicConnection::live(), 0u) << "after cycle " << cycle;
    ASSERT_EQ(quic::detail::StreamState::live(), 0u) << "after cycle " << cycle;
  }
}

TEST_F(EdgeStreamServerTest, RpcStreamServesCloudflaredServerRefusals) {
  Run([&](quic::QuicConnection& edge) -> asio::awaitable<void> {
    co_await quic::test::CallCloudflaredServer(edge, *kj_);
  });
}

TEST_F(EdgeStreamServerTest, MalformedStreamIsResetAndTheConnectionKeepsServing) {
  Run([&](quic::QuicConnection& edge) -> asio::awaitable<void> {
    auto bad = co_await edge.OpenStream();
    std::string junk = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    co_await bad->Write(asio::buffer(junk));
    std::vector<char> buf(16);
    auto r = co_await bad->ReadSome(asio::buffer(buf));
    EXPECT_TRUE(r.ec) << "a malformed stream must be reset";
    // Bad metadata: refused with a ConnectResponse error, not a crash.
    auto smuggled = Get();
    smuggled.headers.emplace_back("X-Evil", "a\r\nInjected: 1");
    auto refused = co_await Exchange(edge, ConnectionType::kHttp, smuggled, "/");
    EXPECT_NE(refused.error.find("CR, LF or NUL"), std::string::npos) << refused.error;
    auto ok = co_await Exchange(edge, ConnectionType::kHttp, Get(), "/status/204");
    EXPECT_EQ(ok.head.status, 204);
  });
  EXPECT_GE(Count("errors_total"), 2u);
}

}  // namespace
}  // namespace tunnelkit::cloudflare
