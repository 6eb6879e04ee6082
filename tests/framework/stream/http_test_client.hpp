// A small HTTP/1.1 client for tests, over any tunnelkit::Stream: streams the request body from
// a generator while reading the response concurrently, hashes the response body with SHA-256,
// and records when each body piece arrived (SSE tests).
#pragma once

#include "sha256.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include "tunnelkit/stream/asio_adapter.hpp"

namespace tunnelkit::test {

// A request body produced piece by piece: fill(offset, out, size).
struct BodyGenerator {
  std::uint64_t size = 0;
  bool chunked = false;  // Transfer-Encoding: chunked instead of Content-Length
  std::function<void(std::uint64_t, unsigned char*, std::size_t)> fill;
  std::string sha256;  // filled in while sending
};

struct HttpResult {
  boost::system::error_code ec;
  int status = 0;
  boost::beast::http::fields headers;
  std::string body;  // kept up to 4 MiB
  std::uint64_t body_size = 0;
  std::string body_sha256;
  std::vector<std::chrono::steady_clock::time_point> piece_times;
  std::vector<std::string> pieces;  // kept up to 1000 small pieces
};

inline boost::asio::awaitable<boost::system::error_code> SendRequestBody(
    StreamRef ref, boost::beast::http::request<boost::beast::http::buffer_body>& req,
    BodyGenerator* body) {
  namespace http = boost::beast::http;
  using boost::asio::redirect_error;
  using boost::asio::use_awaitable;
  boost::system::error_code ec;
  http::request_serializer<http::buffer_body> sr(req);
  co_await http::async_write_header(ref, sr, redirect_error(use_awaitable, ec));
  if (ec || !body) co_return ec;
  Sha256 sha;
  std::vector<unsigned char> chunk(64 * 1024);
  std::uint64_t offset = 0;
  while (offset < body->size) {
    std::size_t n =
        static_cast<std::size_t>(std::min<std::uint64_t>(chunk.size(), body->size - offset));
    body->fill(offset, chunk.data(), n);
    sha.Update(chunk.data(), n);
    offset += n;
    req.body().data = chunk.data();
    req.body().size = n;
    req.body().more = offset < body->size || body->chunked;
    co_await http::async_write(ref, sr, redirect_error(use_awaitable, ec));
    if (ec == http::error::need_buffer) ec = {};
    if (ec) co_return ec;
  }
  body->sha256 = sha.HexFinal();
  if (body->chunked) {
    req.body().data = nullptr;
    req.body().size = 0;
    req.body().more = false;
    co_await http::async_write(ref, sr, redirect_error(use_awaitable, ec));
  }
  co_return ec;
}

// Sends one request on `stream` and reads the response. `buffer` carries leftover bytes
// between requests on one connection.
inline boost::asio::awaitable<HttpResult> DoRequest(
    Stream& stream, boost::beast::flat_buffer& buffer, boost::beast::http::verb method,
    std::string_view target, std::string_view host, BodyGenerator* body = nullptr,
    const std::vector<std::pair<std::string, std::string>>* headers = nullptr) {
  namespace http = boost::beast::http;
  namespace asio = boost::asio;
  using asio::redirect_error;
  using asio::use_awaitable;
  StreamRef ref(stream);
  // (string_view parameters: g++ 12 mishandles non-trivial temporaries in co_await calls.)
  http::request<http::buffer_body> req(method,
                                       boost::beast::string_view(target.data(), target.size()), 11);
  req.set(http::field::host, boost::beast::string_view(host.data(), host.size()));
  if (headers) {
    for (auto& [name, value] : *headers) req.set(name, value);
  }
  if (body) {
    if (body->chunked) {
      req.chunked(true);
    } else {
      req.content_length(body->size);
    }
  }
  req.body().data = nullptr;
  req.body().more = body != nullptr;
  HttpResult result;
  bool sent = false;
  boost::system::error_code send_ec;
  auto ex = co_await asio::this_coro::executor;
  asio::co_spawn(
      ex,
      [&]() -> asio::awaitable<void> {
        send_ec = co_await SendRequestBody(ref, req, body);
        sent = true;
      },
      [](std::exception_ptr) {});

  http::response_parser<http::buffer_body> parser;
  parser.body_limit(std::numeric_limits<std::uint64_t>::max());
  if (method == http::verb::head) parser.skip(true);
  co_await http::async_read_header(ref, buffer, parser, redirect_error(use_awaitable, result.ec));
  if (!result.ec) {
    result.status = static_cast<int>(parser.get().result_int());
    for (const auto& f : parser.get()) result.headers.insert(f.name_string(), f.value());
    Sha256 sha;
    std::vector<char> chunk(64 * 1024);
    while (!parser.is_done()) {
      parser.get().body().data = chunk.data();
      parser.get().body().size = chunk.size();
      co_await http::async_read_some(ref, buffer, parser, redirect_error(use_awaitable, result.ec));
      if (result.ec == http::error::need_buffer) result.ec = {};
      if (result.ec) break;
      std::size_t n = chunk.size() - parser.get().body().size;
      if (n == 0) continue;
      result.piece_times.push_back(std::chrono::steady_clock::now());
      if (result.pieces.size() < 1000 && n < 4096) result.pieces.emplace_back(chunk.data(), n);
      sha.Update(chunk.data(), n);
      result.body_size += n;
      if (result.body.size() + n <= 4 * 1024 * 1024) result.body.append(chunk.data(), n);
    }
    result.body_sha256 = sha.HexFinal();
  }
  // Let the sender finish (bounded: a failed exchange resets the stream).
  asio::steady_timer t(ex);
  for (int i = 0; i < 2000 && !sent; ++i) {
    if (result.ec && i == 0) stream.Reset();
    t.expires_after(std::chrono::milliseconds(5));
    co_await t.async_wait(use_awaitable);
  }
  if (!result.ec && send_ec) result.ec = send_ec;
  co_return result;
}

}  // namespace tunnelkit::test
