// The edge emulator's public ingress (emulator::PublicIngress) over real QUIC on 127.0.0.1: a
// visitor speaks HTTP/1.1 to the ingress, which opens data streams on connections registered in
// a TunnelRegistry; the test's client end answers each stream with a minimal responder
// (ReadStreamOpening, WriteConnectResponse, body bytes).
#include <gtest/gtest.h>

#include <fstream>
#include <iostream>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include "emulator/public_ingress.hpp"
#include "emulator/quic_edge_connection.hpp"
#include "emulator/tunnel_state.hpp"
#include "process_memory.hpp"
#include "quic_test_env.hpp"
#include "sanitizer.hpp"
#include "tunnelkit/cloudflare/wire/codec/http_metadata.hpp"
#include "tunnelkit/cloudflare/wire/stream/connect_stream.hpp"
#include "tunnelkit/stream/prefixed_stream.hpp"
#include "tunnelkit/stream/socket_stream.hpp"

namespace tunnelkit::cloudflare::quic::test {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

// What one data stream brought to the client end.
struct SeenRequest {
  int conn_index = -1;
  ConnectRequest request;
  HttpRequestMeta meta;
};

using Responder = std::function<asio::awaitable<void>(std::shared_ptr<QuicStream>, StreamOpening,
                                                      int conn_index)>;

std::string Meta(const SeenRequest& seen, const std::string& header) {
  std::string out;
  for (const auto& [name, value] : seen.meta.headers) {
    if (beast::iequals(name, header)) out += (out.empty() ? "" : "|") + value;
  }
  return out;
}

// The request body as the client end sees it: leftover bytes, then the stream up to FIN.
asio::awaitable<std::string> ReadBody(QuicStream& stream, std::vector<std::uint8_t> leftover) {
  PrefixedStream body(stream, std::move(leftover));
  co_return co_await ReadAll(body);
}

asio::awaitable<void> Answer(QuicStream& stream, int status, HttpHeaderList headers,
                             std::string body, bool fin = true) {
  ConnectResponse response;
  response.metadata = EncodeResponseMetadata({status, std::move(headers)});
  auto ec = co_await WriteConnectResponse(stream, response);
  if (ec) throw boost::system::system_error(ec, "WriteConnectResponse");
  co_await WriteAll(stream, std::move(body), 64 * 1024, fin);
}

class EdgeIngressTest : public ::testing::Test {
 protected:
  EdgeIngressTest()
      : registry(emulator::TunnelRegistry::Options{}), acceptor(io), tunnel(registry.Issue()) {}

  ~EdgeIngressTest() override {
    if (HasFailure()) {
      for (const auto& e : events) std::cerr << "ingress: " << e << "\n";
    }
    boost::system::error_code ec;
    acceptor.close(ec);
  }

  // Starts the QUIC edge and the visitor listener.
  void Start(emulator::PublicIngressOptions options = {}) {
    options.on_event = [this](const std::string& line) { events.push_back(line); };
    ingress = std::make_unique<emulator::PublicIngress>(registry, options);
    server = std::make_unique<QuicServer>(
        io.get_executor(), Loopback(), ServerOptions(), [this](std::shared_ptr<QuicConnection> c) {
          edge_connections.push_back(std::make_shared<emulator::QuicEdgeConnection>(c));
        });
    tcp::endpoint local(asio::ip::make_address("127.0.0.1"), 0);
    acceptor.open(local.protocol());
    acceptor.bind(local);
    acceptor.listen();
    asio::co_spawn(io, AcceptVisitors(), asio::detached);
  }

  asio::awaitable<void> AcceptVisitors() {
    for (;;) {
      boost::system::error_code ec;
      tcp::socket socket =
          co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return;
      std::string ip = socket.remote_endpoint(ec).address().to_string();
      asio::co_spawn(io, ingress->ServeHttp(std::make_unique<TcpStream>(std::move(socket)), ip),
                     asio::detached);
    }
  }

  // A client connection, registered for the tunnel as `conn_index`; its data streams go to
  // the responder.
  asio::awaitable<void> ConnectClient(int conn_index) {
    std::size_t before = edge_connections.size();
    auto connection =
        co_await QuicClient::Connect(io.get_executor(), server->local_endpoint(), ClientOptions());
    connection->SetStreamHandler([this, conn_index](std::shared_ptr<QuicStream> stream) {
      asio::co_spawn(io, Serve(std::move(stream), conn_index), asio::detached);
    });
    clients.push_back(connection);
    for (int i = 0; i < 400 && edge_connections.size() == before; ++i) co_await Sleep(5ms);
    if (edge_connections.size() == before) throw std::runtime_error("server saw no connection");
    RegistrationRequest request;
    request.credentials = tunnel.credentials;
    request.conn_index = static_cast<std::uint8_t>(conn_index);
    auto result = registry.Register(request, edge_connections.back());
    if (!result.registered) throw std::runtime_error("registration refused");
  }

  asio::awaitable<void> Serve(std::shared_ptr<QuicStream> stream, int conn_index) {
    MetadataLimits limits;
    StreamOpening opening = co_await ReadStreamOpening(*stream, limits);
    if (!opening.error.empty() || opening.kind != StreamKind::kData) {
      stream->Reset();
      co_return;
    }
    SeenRequest seen;
    seen.conn_index = conn_index;
    seen.request = opening.request;
    DecodeRequestMetadata(opening.request.metadata, seen.meta);
    seen_requests.push_back(seen);
    try {
      co_await responder(stream, std::move(opening), conn_index);
    } catch (const std::exception&) {
      stream->Reset();
    }
  }

  std::string Host() const { return tunnel.hostname; }

  asio::awaitable<tcp::socket> Visit() {
    tcp::socket socket(io);
    co_await socket.async_connect(acceptor.local_endpoint(), asio::use_awaitable);
    co_return socket;
  }

  http::request<http::string_body> Request(http::verb verb, const std::string& target,
                                           std::string body = {}) {
    http::request<http::string_body> request(verb, target, 11);
    request.set(http::field::host, Host());
    request.body() = std::move(body);
    if (!request.body().empty() || verb == http::verb::post) request.prepare_payload();
    return request;
  }

  // One request/response on `socket` (keep-alive).
  asio::awaitable<http::response<http::string_body>> Exchange(
      tcp::socket& socket, beast::flat_buffer& buffer, http::request<http::string_body> request) {
    co_await http::async_write(socket, request, asio::use_awaitable);
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 << 20);
    co_await http::async_read(socket, buffer, parser, asio::use_awaitable);
    co_return parser.release();
  }

  asio::awaitable<http::response<http::string_body>> Fetch(
      http::request<http::string_body> request) {
    auto socket = co_await Visit();
    beast::flat_buffer buffer;
    co_return co_await Exchange(socket, buffer, std::move(request));
  }

  bool HasEvent(const std::string& part) const {
    for (const auto& e : events) {
      if (e.find(part) != std::string::npos) return true;
    }
    return false;
  }

  asio::io_context io;
  emulator::TunnelRegistry registry;
  tcp::acceptor acceptor;
  QuickTunnel tunnel;
  std::unique_ptr<emulator::PublicIngress> ingress;
  std::unique_ptr<QuicServer> server;
  std::vector<std::shared_ptr<emulator::QuicEdgeConnection>> edge_connections;
  std::vector<std::shared_ptr<QuicConnection>> clients;
  std::vector<SeenRequest> seen_requests;
  std::vector<std::string> events;
  Responder responder;
};

// Answers 200 with what it received: method, body size and SHA-256, conn index.
asio::awaitable<void> DescribeRequest(std::shared_ptr<QuicStream> stream, StreamOpening opening,
                                      int conn_index) {
  std::string body = co_await ReadBody(*stream, std::move(opening.leftover));
  HttpRequestMeta meta;
  DecodeRequestMetadata(opening.request.metadata, meta);
  std::string text = "hello " + TargetFromDest(opening.request.dest);
  HttpHeaderList headers = {{"Content-Type", "text/plain"},
                            {"Content-Length", std::to_string(text.size())},
                            {"X-Method", meta.method},
                            {"X-Body-Bytes", std::to_string(body.size())},
                            {"X-Body-Sha256", tunnelkit::test::Sha256Hex(body)},
                            {"X-Conn", std::to_string(conn_index)},
                            {"Set-Cookie", "a=1"},
                            {"Set-Cookie", "b=2"}};
  co_await Answer(*stream, 200, headers, text);
}

TEST_F(EdgeIngressTest, GetCarriesTheRequestHeadAsMetadata) {
  Start();
  responder = DescribeRequest;
  RunWithDeadline(io, [&]() -> asio::awaitable<void> {
    co_await ConnectClient(0);
    auto request = Request(http::verb::get, "/path/x?q=1");
    request.set("X-Test", "one");
    request.insert("X-Test", "two");
    request.set(http::field::connection, "keep-alive, X-Secret-Hop");
    request.set("X-Secret-Hop", "dropped");
    request.set("X-Forwarded-For", "10.1.2.3");
    request.set("Cf-Connecting-Ip", "6.6.6.6");
    auto response = co_await Fetch(std::move(request));
    EXPECT_EQ(response.result_int(), 200);
    EXPECT_EQ(response.body(), "hello /path/x?q=1");
    EXPECT_EQ(response["X-Method"], "GET");
    EXPECT_EQ(response["X-Body-Bytes"], "0");
    EXPECT_EQ(response[http::field::server], "cloudflare");
    EXPECT_FALSE(response["Cf-Ray"].empty());
    int cookies = 0;
    for (const auto& field : response) cookies += field.name() == http::field::set_cookie;
    EXPECT_EQ(cookies, 2);
    // The log line comes right after the last byte went out.
    for (int i = 0; i < 100 && events.empty(); ++i) co_await Sleep(5ms);
  });
  ASSERT_EQ(seen_requests.size(), 1u);
  const auto& seen = seen_requests[0];
  EXPECT_EQ(seen.request.dest, "https://" + Host() + "/path/x?q=1");
  EXPECT_EQ(seen.request.type, ConnectionType::kHttp);
  EXPECT_EQ(seen.meta.method, "GET");
  EXPECT_EQ(seen.meta.host, Host());
  EXPECT_EQ(Meta(seen, "X-Test"), "one|two");
  EXPECT_EQ(Meta(seen, "Connection"), "");
  EXPECT_EQ(Meta(seen, "X-Secret-Hop"), "");
  EXPECT_EQ(Meta(seen, "Host"), "");
  EXPECT_EQ(Meta(seen, "Cf-Connecting-Ip"), "127.0.0.1");
  EXPECT_EQ(Meta(seen, "X-Forwarded-For"), "10.1.2.3, 127.0.0.1");
  EXPECT_EQ(Meta(seen, "X-Forwarded-Proto"), "https");
  EXPECT_TRUE(Meta(seen, "Cf-Ray").ends_with("-LHR")) << Meta(seen, "Cf-Ray");
  EXPECT_TRUE(HasEvent("proxied GET " + Host() + "/path/x?q=1 status=200 conn_index=0 bytes=17"));
}

TEST_F(EdgeIngressTest, PostBodiesArriveWholeByLengthAndChunked) {
  Start();
  responder = DescribeRequest;
  const std::string payload = Pattern(5 * 1024 * 1024 + 7, 11);
  RunWithDeadline(
      io,
      [&]() -> asio::awaitable<void> {
        co_await ConnectClient(0);
        auto socket = co_await Visit();
        beast::flat_buffer buffer;
        auto response =
            co_await Exchange(socket, buffer, Request(http::verb::post, "/upload", payload));
        EXPECT_EQ(response.result_int(), 200);
        EXPECT_EQ(response["X-Body-Bytes"], std::to_string(payload.size()));
        EXPECT_EQ(response["X-Body-Sha256"], tunnelkit::test::Sha256Hex(payload));
        // Same connection, a chunked upload: the data stream carries the decoded bytes.
        http::request<http::string_body> chunked(http::verb::post, "/chunked", 11);
        chunked.set(http::field::host, Host());
        chunked.body() = payload.substr(0, 300000);
        chunked.chunked(true);
        // curl's way for large uploads: the edge answers 100 Continue itself.
        chunked.set(http::field::expect, "100-continue");
        response = co_await Exchange(socket, buffer, std::move(chunked));
        EXPECT_EQ(response.result_int(), 100);
        http::response_parser<http::string_body> final_response;
        co_await http::async_read(socket, buffer, final_response, asio::use_awaitable);
        response = final_response.release();
        EXPECT_EQ(response.result_int(), 200);
        EXPECT_EQ(response["X-Body-Sha256"], tunnelkit::test::Sha256Hex(payload.substr(0, 300000)));
      },
      60s);
  ASSERT_EQ(seen_requests.size(), 2u);
  EXPECT_EQ(Meta(seen_requests[0], "Content-Length"), std::to_string(payload.size()));
  EXPECT_EQ(Meta(seen_requests[1], "Transfer-Encoding"), "");
  EXPECT_EQ(Meta(seen_requests[1], "Expect"), "");
}

// Peak resident memory of this process (VmHWM), in bytes.
std::size_t PeakMemory() {
  return static_cast<std::size_t>(std::max(0L, tunnelkit::test::PeakResidentKib())) * 1024;
}

TEST_F(EdgeIngressTest, FiftyMegabytesEachWayWithBoundedMemory) {
  constexpr std::size_t kTotal = 50u << 20;
  constexpr std::size_t kDownload = 50u << 20;
  const std::string block = Pattern(64 * 1024, 21);
  Start();
  // Checks every byte against the pattern as it streams by, then sends 50 MB back.
  responder = [&block](std::shared_ptr<QuicStream> stream, StreamOpening opening,
                       int) -> asio::awaitable<void> {
    PrefixedStream body(*stream, std::move(opening.leftover));
    std::vector<char> buf(64 * 1024);
    std::size_t seen = 0;
    bool intact = true;
    for (;;) {
      auto r = co_await body.ReadSome(asio::buffer(buf));
      if (r.ec) break;
      for (std::size_t i = 0; i < r.bytes; ++i) {
        intact = intact && buf[i] == block[(seen + i) % block.size()];
      }
      seen += r.bytes;
    }
    HttpHeaderList headers = {{"Content-Length", std::to_string(kDownload)},
                              {"X-Body-Bytes", std::to_string(seen)},
                              {"X-Body-Intact", intact ? "yes" : "no"}};
    co_await Answer(*stream, 200, headers, "", false);
    for (std::size_t sent = 0; sent < kDownload; sent += block.size()) {
      auto w = co_await stream->Write(asio::buffer(block));
      if (w.ec) co_return;
    }
    co_await stream->ShutdownWrite();
  };
  std::size_t received = 0;
  bool intact = true;
  std::size_t baseline = 0;
  RunWithDeadline(
      io,
      [&]() -> asio::awaitable<void> {
        co_await ConnectClient(0);
        tunnelkit::test::ResetPeakResident();
        baseline = PeakMemory();
        auto socket = co_await Visit();
        std::string head = "POST /big HTTP/1.1\r\nHost: " + Host() +
                           "\r\nContent-Length: " + std::to_string(kTotal) + "\r\n\r\n";
        co_await asio::async_write(socket, asio::buffer(head), asio::use_awaitable);
        for (std::size_t sent = 0; sent < kTotal; sent += block.size()) {
          co_await asio::async_write(socket, asio::buffer(block), asio::use_awaitable);
        }
        beast::flat_buffer buffer;
        http::response_parser<http::buffer_body> parser;
        parser.body_limit(kTotal);
        co_await http::async_read_header(socket, buffer, parser, asio::use_awaitable);
        EXPECT_EQ(parser.get()["X-Body-Bytes"], std::to_string(kTotal));
        EXPECT_EQ(parser.get()["X-Body-Intact"], "yes");
        std::vector<char> chunk(64 * 1024);
        while (!parser.is_done()) {
          parser.get().body().data = chunk.data();
          parser.get().body().size = chunk.size();
          boost::system::error_code ec;
          co_await http::async_read_some(socket, buffer, parser,
                                         asio::redirect_error(asio::use_awaitable, ec));
          if (ec && ec != http::error::need_buffer) throw boost::system::system_error(ec);
          std::size_t n = chunk.size() - parser.get().body().size;
          for (std::size_t i = 0; i < n; ++i) {
            intact = intact && chunk[i] == block[(received + i) % block.size()];
          }
          received += n;
        }
      },
      60s);
  EXPECT_EQ(received, kDownload);
  EXPECT_TRUE(intact);
  std::cout << "peak memory grew by " << ((PeakMemory() - baseline) >> 10) << " KiB\n";
  if (tunnelkit::test::kAddressSanitizer) GTEST_SKIP() << tunnelkit::test::kMemoryBoundUnderAsan;
  // Holding either body would add 50 MB; streaming costs buffers and QUIC windows only.
  EXPECT_LT(PeakMemory() - baseline, std::size_t{32} << 20)
      << "peak grew by " << ((PeakMemory() - baseline) >> 20) << " MB";
}

TEST_F(EdgeIngressTest, ResponseWithoutLengthIsChunked) {
  Start();
  responder = [](std::shared_ptr<QuicStream> stream, StreamOpening opening,
                 int) -> asio::awaitable<void> {
    co_await ReadBody(*stream, std::move(opening.leftover));
    HttpHeaderList headers = {{"Content-Type", "text/plain"}};
    co_await Answer(*stream, 200, headers, "part one, ", false);
    co_await WriteAll(*stream, "part two, ", 64, false);
    co_await WriteAll(*stream, Pattern(200000, 3), 64 * 1024, true);
  };
  RunWithDeadline(io, [&]() -> asio::awaitable<void> {
    co_await ConnectClient(0);
    auto response = co_await Fetch(Request(http::verb::get, "/stream"));
    EXPECT_EQ(response.result_int(), 200);
    EXPECT_TRUE(response.chunked());
    EXPECT_EQ(response.body(), "part one, part two, " + Pattern(200000, 3));
  });
}

TEST_F(EdgeIngressTest, HopByHopResponseFieldsHeadAndBadVisitorRequests) {
  Start();
  responder = [](std::shared_ptr<QuicStream> stream, StreamOpening opening,
                 int) -> asio::awaitable<void> {
    co_await ReadBody(*stream, std::move(opening.leftover));
    // Fields that describe the origin's own connection must not reach the visitor.
    HttpHeaderList headers = {{"Connection", "close, X-Private"},
                              {"X-Private", "1"},
                              {"Transfer-Encoding", "chunked"},
                              {"Keep-Alive", "timeout=5"},
                              {"Content-Length", "4"},
                              {"X-Kept", "yes"}};
    bool head = opening.request.metadata.size() > 0 &&
                *FindMetadata(opening.request.metadata, kMetaHttpMethod) == "HEAD";
    co_await Answer(*stream, 200, headers, head ? "" : "body");
  };
  RunWithDeadline(io, [&]() -> asio::awaitable<void> {
    co_await ConnectClient(0);
    auto socket = co_await Visit();
    beast::flat_buffer buffer;
    auto response = co_await Exchange(socket, buffer, Request(http::verb::get, "/a"));
    EXPECT_EQ(response.body(), "body");
    EXPECT_EQ(response["X-Kept"], "yes");
    EXPECT_EQ(response["X-Private"], "");
    EXPECT_EQ(response["Keep-Alive"], "");
    EXPECT_FALSE(response.chunked());
    EXPECT_TRUE(response.keep_alive());
    // HEAD: the length is told, no body follows; the connection stays usable.
    http::request<http::string_body> head(http::verb::head, "/h", 11);
    head.set(http::field::host, Host());
    co_await http::async_write(socket, head, asio::use_awaitable);
    http::response_parser<http::empty_body> head_parser;
    head_parser.skip(true);
    co_await http::async_read(socket, buffer, head_parser, asio::use_awaitable);
    EXPECT_EQ(head_parser.get().result_int(), 200);
    EXPECT_EQ(head_parser.get()[http::field::content_length], "4");
    response = co_await Exchange(socket, buffer, Request(http::verb::get, "/b"));
    EXPECT_EQ(response.body(), "body");
    // Garbage instead of a request head: 400, then the edge closes.
    auto bad = co_await Visit();
    const std::string garbage = "NOT HTTP AT ALL\r\n\r\n";
    co_await asio::async_write(bad, asio::buffer(garbage), asio::use_awaitable);
    beast::flat_buffer bad_buffer;
    http::response<http::string_body> refused;
    co_await http::async_read(bad, bad_buffer, refused, asio::use_awaitable);
    EXPECT_EQ(refused.result_int(), 400);
    EXPECT_FALSE(refused.keep_alive());
  });
  EXPECT_EQ(seen_requests.size(), 3u);
}

TEST_F(EdgeIngressTest, ServerSentEventsReachTheVisitorOneByOne) {
  Start();
  responder = [](std::shared_ptr<QuicStream> stream, StreamOpening opening,
                 int) -> asio::awaitable<void> {
    co_await ReadBody(*stream, std::move(opening.leftover));
    HttpHeaderList headers = {{"Content-Type", "text/event-stream"}};
    co_await Answer(*stream, 200, headers, "", false);
    for (int i = 1; i <= 3; ++i) {
      std::string event = "data: event " + std::to_string(i) + "\n\n";
      co_await WriteAll(*stream, event, 64, i == 3);
      if (i < 3) co_await Sleep(300ms);
    }
  };
  std::vector<Clock::duration> arrivals;
  RunWithDeadline(io, [&]() -> asio::awaitable<void> {
    co_await ConnectClient(0);
    auto socket = co_await Visit();
    auto request = Request(http::verb::get, "/events");
    co_await http::async_write(socket, request, asio::use_awaitable);
    beast::flat_buffer buffer;
    http::response_parser<http::buffer_body> parser;
    co_await http::async_read_header(socket, buffer, parser, asio::use_awaitable);
    EXPECT_EQ(parser.get()[http::field::content_type], "text/event-stream");
    auto start = Clock::now();
    std::string received;
    std::vector<char> chunk(4096);
    while (!parser.is_done()) {
      parser.get().body().data = chunk.data();
      parser.get().body().size = chunk.size();
      boost::system::error_code ec;
      co_await http::async_read_some(socket, buffer, parser,
                                     asio::redirect_error(asio::use_awaitable, ec));
      if (ec && ec != http::error::need_buffer) throw boost::system::system_error(ec);
      std::size_t before = received.size();
      received.append(chunk.data(), chunk.size() - parser.get().body().size);
      // Count events completed by this read.
      auto count = [](const std::string& s) {
        std::size_t n = 0;
        for (auto p = s.find("\n\n"); p != std::string::npos; p = s.find("\n\n", p + 2)) ++n;
        return n;
      };
      for (std::size_t n = count(received.substr(0, before)); n < count(received); ++n) {
        arrivals.push_back(Clock::now() - start);
      }
    }
    EXPECT_EQ(received, "data: event 1\n\ndata: event 2\n\ndata: event 3\n\n");
  });
  ASSERT_EQ(arrivals.size(), 3u);
  // The responder waits 300 ms between events: each must arrive before the next is sent.
  EXPECT_GE(arrivals[1] - arrivals[0], 200ms);
  EXPECT_GE(arrivals[2] - arrivals[1], 200ms);
}

TEST_F(EdgeIngressTest, WebSocketUpgradeBecomesARawPipe) {
  Start();
  responder = [](std::shared_ptr<QuicStream> stream, StreamOpening opening,
                 int) -> asio::awaitable<void> {
    HttpHeaderList headers = {{"Upgrade", "websocket"},
                              {"Connection", "Upgrade"},
                              {"Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="}};
    co_await Answer(*stream, 101, headers, "", false);
    // Echo raw bytes (the ones that came with the request first) until the edge's FIN.
    PrefixedStream pipe(*stream, std::move(opening.leftover));
    std::vector<char> buf(4096);
    for (;;) {
      auto r = co_await pipe.ReadSome(asio::buffer(buf));
      if (r.ec) break;
      co_await WriteAll(*stream, std::string(buf.data(), r.bytes), 4096, false);
    }
    co_await stream->ShutdownWrite();
  };
  RunWithDeadline(io, [&]() -> asio::awaitable<void> {
    co_await ConnectClient(0);
    auto socket = co_await Visit();
    std::string head = "GET /ws HTTP/1.1\r\nHost: " + Host() +
                       "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       "Sec-WebSocket-Version: 13\r\n\r\n";
    // Frames sent together with the head sit in the ingress's parse buffer: they must not be
    // lost.
    const std::string first = head + "early-bytes|";
    co_await asio::async_write(socket, asio::buffer(first), asio::use_awaitable);
    beast::flat_buffer buffer;
    http::response_parser<http::empty_body> parser;
    co_await http::async_read_header(socket, buffer, parser, asio::use_awaitable);
    EXPECT_EQ(parser.get().result_int(), 101);
    EXPECT_EQ(parser.get()["Sec-WebSocket-Accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    EXPECT_TRUE(beast::iequals(parser.get()[http::field::upgrade], "websocket"));
    const std::string later = Pattern(100000, 9);
    co_await asio::async_write(socket, asio::buffer(later), asio::use_awaitable);
    socket.shutdown(tcp::socket::shutdown_send);
    std::string echoed(static_cast<const char*>(buffer.data().data()), buffer.size());
    std::vector<char> buf(65536);
    for (;;) {
      boost::system::error_code ec;
      std::size_t n = co_await socket.async_read_some(
          asio::buffer(buf), asio::redirect_error(asio::use_awaitable, ec));
      echoed.append(buf.data(), n);
      if (ec) break;
    }
    EXPECT_EQ(echoed.size(), std::string("early-bytes|").size() + later.size());
    EXPECT_TRUE(echoed == "early-bytes|" + later);
  });
  ASSERT_EQ(seen_requests.size(), 1u);
  EXPECT_EQ(seen_requests[0].request.type, ConnectionType::kWebsocket);
  EXPECT_EQ(Meta(seen_requests[0], "Upgrade"), "websocket");
  EXPECT_EQ(Meta(seen_requests[0], "Connection"), "Upgrade");
  EXPECT_EQ(Meta(seen_requests[0], "Sec-WebSocket-Version"), "13");
}

TEST_F(EdgeIngressTest, OriginErrorIs502AndMalformedHeadIs502ThenServingGoesOn) {
  Start();
  responder = [](std::shared_ptr<QuicStream> stream, StreamOpening opening,
                 int conn_index) -> asio::awaitable<void> {
    std::string target = TargetFromDest(opening.request.dest);
    co_await ReadBody(*stream, std::move(opening.leftover));
    if (target == "/error") {
      ConnectResponse response;
      response.error = "Unable to reach the origin service: connection refused";
      co_await WriteConnectResponse(*stream, response);
      co_await stream->ShutdownWrite();
    } else if (target == "/garbage") {
      co_await WriteAll(*stream, "this is not a data stream preamble", 64, true);
    } else {
      co_await DescribeRequest(stream, std::move(opening), conn_index);
    }
  };
  RunWithDeadline(io, [&]() -> asio::awaitable<void> {
    co_await ConnectClient(0);
    auto socket = co_await Visit();
    beast::flat_buffer buffer;
    auto response = co_await Exchange(socket, buffer, Request(http::verb::get, "/error"));
    EXPECT_EQ(response.result_int(), 502);
    EXPECT_NE(response.body().find("Unable to reach the origin service"), std::string::npos)
        << response.body();
    response = co_await Exchange(socket, buffer, Request(http::verb::get, "/garbage"));
    EXPECT_EQ(response.result_int(), 502);
    // The same visitor connection still works.
    response = co_await Exchange(socket, buffer, Request(http::verb::get, "/fine"));
    EXPECT_EQ(response.result_int(), 200);
    EXPECT_EQ(response.body(), "hello /fine");
  });
  EXPECT_TRUE(HasEvent("status=502 conn_index=0 error=\"origin error: Unable to reach"));
}

TEST_F(EdgeIngressTest, NoLiveConnectionIs530) {
  Start();
  responder = DescribeRequest;
  RunWithDeadline(io, [&]() -> asio::awaitable<void> {
    auto response = co_await Fetch(Request(http::verb::get, "/"));
    EXPECT_EQ(response.result_int(), 530);
    EXPECT_EQ(response.body(), "error code: 1033");
    auto unknown = Request(http::verb::get, "/");
    unknown.set(http::field::host, "nobody-here.trycloudflare.com");
    response = co_await Fetch(std::move(unknown));
    EXPECT_EQ(response.result_int(), 530);
  });
}

TEST_F(EdgeIngressTest, RequestsRoundRobinOverConnectionsAndSkipDeadOnes) {
  Start();
  responder = DescribeRequest;
  std::vector<std::string> served;
  std::vector<std::string> after_drop;
  RunWithDeadline(io, [&]() -> asio::awaitable<void> {
    co_await ConnectClient(0);
    co_await ConnectClient(1);
    auto socket = co_await Visit();
    beast::flat_buffer buffer;
    for (int i = 0; i < 4; ++i) {
      auto response = co_await Exchange(socket, buffer, Request(http::verb::get, "/rr"));
      served.push_back(std::string(response["X-Conn"]));
    }
    // Connection 0 closes; its registration still routes (as right after a drop on the real
    // edge) but opening a stream fails, so every request goes to connection 1.
    edge_connections[0]->Drop();
    co_await Sleep(50ms);
    for (int i = 0; i < 3; ++i) {
      auto response = co_await Exchange(socket, buffer, Request(http::verb::get, "/rr"));
      after_drop.push_back(std::string(response["X-Conn"]));
    }
  });
  EXPECT_EQ(served, (std::vector<std::string>{"0", "1", "0", "1"}));
  EXPECT_EQ(after_drop, (std::vector<std::string>{"1", "1", "1"}));
}

TEST_F(EdgeIngressTest, SlowResponseHeadIs524AndCutBodyIsVisible) {
  emulator::PublicIngressOptions options;
  options.response_timeout = 300ms;
  Start(options);
  responder = [](std::shared_ptr<QuicStream> stream, StreamOpening opening,
                 int) -> asio::awaitable<void> {
    std::string target = TargetFromDest(opening.request.dest);
    co_await ReadBody(*stream, std::move(opening.leftover));
    if (target == "/slow") {
      co_await Sleep(1500ms);
      co_return;
    }
    // Headers, some body, then RST: the visitor must see a cut response.
    HttpHeaderList headers = {{"Content-Type", "text/plain"}};
    co_await Answer(*stream, 200, headers, "partial", false);
    co_await Sleep(50ms);
    stream->Reset();
  };
  RunWithDeadline(io, [&]() -> asio::awaitable<void> {
    co_await ConnectClient(0);
    auto started = Clock::now();
    auto response = co_await Fetch(Request(http::verb::get, "/slow"));
    EXPECT_EQ(response.result_int(), 524);
    EXPECT_LT(Clock::now() - started, 1200ms);
    auto socket = co_await Visit();
    auto request = Request(http::verb::get, "/cut");
    co_await http::async_write(socket, request, asio::use_awaitable);
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    boost::system::error_code ec;
    co_await http::async_read(socket, buffer, parser,
                              asio::redirect_error(asio::use_awaitable, ec));
    EXPECT_TRUE(ec) << "a cut response must not parse as complete";
    EXPECT_EQ(parser.get().result_int(), 200);
  });
  EXPECT_TRUE(HasEvent("cut=\"the tunnel reset the stream"));
}

TEST_F(EdgeIngressTest, TcpIngressSplicesAfterAnEmptyResponse) {
  Start();
  responder = [](std::shared_ptr<QuicStream> stream, StreamOpening opening,
                 int) -> asio::awaitable<void> {
    ConnectResponse empty;
    co_await WriteConnectResponse(*stream, empty);
    PrefixedStream pipe(*stream, std::move(opening.leftover));
    std::string all = co_await ReadAll(pipe);
    std::string reply = "got " + std::to_string(all.size()) + " bytes";
    co_await WriteAll(*stream, reply, 64, true);
  };
  std::string reply;
  RunWithDeadline(io, [&]() -> asio::awaitable<void> {
    co_await ConnectClient(3);
    tcp::acceptor raw(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    const unsigned port = raw.local_endpoint().port();
    tcp::socket client(io);
    co_await client.async_connect(raw.local_endpoint(), asio::use_awaitable);
    tcp::socket accepted = co_await raw.async_accept(asio::use_awaitable);
    asio::co_spawn(io, ingress->ServeTcp(std::make_unique<TcpStream>(std::move(accepted)), port),
                   asio::detached);
    const std::string upload = Pattern(70000, 5);
    co_await asio::async_write(client, asio::buffer(upload), asio::use_awaitable);
    client.shutdown(tcp::socket::shutdown_send);
    boost::system::error_code ec;
    std::string buf(100, '\0');
    std::size_t n = co_await asio::async_read(client, asio::buffer(buf),
                                              asio::redirect_error(asio::use_awaitable, ec));
    reply = buf.substr(0, n);
    EXPECT_EQ(seen_requests.size(), 1u);
    if (seen_requests.size() == 1) {
      EXPECT_EQ(seen_requests[0].request.type, ConnectionType::kTcp);
      EXPECT_EQ(seen_requests[0].request.dest, Host() + ":" + std::to_string(port));
      EXPECT_TRUE(seen_requests[0].request.metadata.empty());
    }
  });
  EXPECT_EQ(reply, "got 70000 bytes");
}

TEST(EdgeState, TunnelsRoundTripThroughTheStateFile) {
  emulator::TunnelRegistry registry(emulator::TunnelRegistry::Options{});
  registry.Issue();
  registry.Issue();
  auto path = (std::filesystem::temp_directory_path() /
               ("cfedge-state-" + std::to_string(::getpid()) + ".json"))
                  .string();
  emulator::SaveTunnels(path, registry.tunnels());
  auto loaded = emulator::LoadTunnels(path);
  std::filesystem::remove(path);
  ASSERT_EQ(loaded.size(), 2u);
  auto original = registry.tunnels();
  for (std::size_t i = 0; i < loaded.size(); ++i) {
    EXPECT_EQ(loaded[i].credentials.tunnel_id, original[i].credentials.tunnel_id);
    EXPECT_EQ(loaded[i].credentials.secret, original[i].credentials.secret);
    EXPECT_EQ(loaded[i].credentials.account_tag, original[i].credentials.account_tag);
    EXPECT_EQ(loaded[i].hostname, original[i].hostname);
  }
  EXPECT_TRUE(emulator::LoadTunnels(path).empty());  // absent file: nothing issued yet
  EXPECT_THROW(emulator::TunnelsFromJson(R"({"tunnels":[{"id":"x"}]})"), std::runtime_error);
}

}  // namespace
}  // namespace tunnelkit::cloudflare::quic::test
