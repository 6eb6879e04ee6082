// fuzz-links:
// fuzz-sources: framework/src/origin/*.cpp
// fuzz-libs: fuzz_framework_io fuzz_framework_config tunnelkit_proto fuzz_framework_text
// What a local origin answers, read by the origin proxy (OriginProxy::ServeHttpStream, as ferro
// and zlayer use it): the first input byte picks the client's request (GET, HEAD, POST with a
// body, keep-alive pair, chunked POST), the rest is the origin's bytes, served from a pooled
// in-process connection (an upgrade never takes a pooled connection, so none is here).
// Whatever the origin sends, the client gets an HTTP response head that parses (the origin's,
// or a 502), and everything ends once the bytes run out.
#include <array>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include <spdlog/logger.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>

#include "tunnelkit/origin/origin_proxy.hpp"
#include "tunnelkit/stream/pipe.hpp"

namespace asio = boost::asio;
namespace http = boost::beast::http;
using namespace tunnelkit;

namespace {

// No socket exists at this path: a fresh connection (the proxy's retry after a pooled one
// failed) is refused at once, without any network.
constexpr const char* kService = "unix:/nonexistent/tunnelkit-fuzz-origin.sock";
constexpr std::size_t kReadLimit = 256 * 1024;

constexpr std::array<std::string_view, 5> kRequests = {
    "GET /a HTTP/1.1\r\nHost: app.example.com\r\n\r\n",
    "HEAD /a HTTP/1.1\r\nHost: app.example.com\r\n\r\n",
    "POST /a HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 5\r\n\r\nhello",
    "GET /a HTTP/1.1\r\nHost: app.example.com\r\n\r\nGET /b HTTP/1.1\r\nHost: "
    "app.example.com\r\n\r\n",
    "POST /a HTTP/1.1\r\nHost: app.example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
    "5\r\nhello\r\n0\r\n\r\n",
};

void Drain(asio::io_context& io) {
  for (int i = 0; i < 1'000'000 && io.poll() > 0; ++i) {
  }
}

asio::awaitable<void> WriteThenRead(Stream& stream, std::string_view bytes, std::string& received) {
  IoResult written = co_await stream.Write(asio::buffer(bytes.data(), bytes.size()));
  if (!written.ec) co_await stream.ShutdownWrite();
  std::array<char, 16 * 1024> chunk;
  while (received.size() < kReadLimit) {
    IoResult r = co_await stream.ReadSome(asio::buffer(chunk));
    if (r.ec) break;
    received.append(chunk.data(), r.bytes);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  static const auto quiet = std::make_shared<spdlog::logger>("fuzz");  // no sinks
  const std::string_view request = kRequests[data[0] % kRequests.size()];
  const std::string_view answer(reinterpret_cast<const char*>(data + 1), size - 1);

  asio::io_context io;
  auto service = origin::ParseService(kService);
  if (!service) std::abort();
  origin::OriginProxy proxy(io.get_executor(), origin::Router::CatchAll(*service), quiet);
  auto [origin_near, origin_far] = MakeStreamPair(io.get_executor());
  auto pooled = std::make_unique<origin::OriginConnection>();
  pooled->stream = std::move(origin_near);
  proxy.pool().Release(std::string("unix:") + service->path, std::move(pooled), 1);
  auto [client_near, client_far] = MakeStreamPair(io.get_executor());

  std::string to_client;
  std::string to_origin;
  asio::co_spawn(io, proxy.ServeHttpStream(*client_far), asio::detached);
  asio::co_spawn(io, WriteThenRead(*origin_far, answer, to_origin), asio::detached);
  asio::co_spawn(io, WriteThenRead(*client_near, request, to_client), asio::detached);
  Drain(io);

  // The client's first bytes are a response head (the origin's or the proxy's own).
  if (!to_client.empty()) {
    http::response_parser<http::empty_body> parser;
    parser.skip(true);
    boost::system::error_code ec;
    parser.put(asio::buffer(to_client), ec);
    if (ec && ec != http::error::need_more) std::abort();
    if (!parser.is_header_done() && to_client.size() >= kReadLimit) std::abort();
  }
  client_near->Reset();
  origin_far->Reset();
  Drain(io);
  client_near.reset();
  origin_far.reset();
  Drain(io);
  return 0;
}
