#include "http_client.hpp"

#include <sys/socket.h>
#include <sys/time.h>

#include <thread>

#include <boost/algorithm/string/predicate.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

namespace tunnelkit::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using asio::ip::tcp;

namespace {

bool Connect(tcp::socket& s, int port, std::chrono::seconds timeout, std::string& error) {
  boost::system::error_code ec;
  s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)),
            ec);
  if (ec) {
    error = "connect: " + ec.message();
    return false;
  }
  timeval tv{static_cast<time_t>(timeout.count()), 0};
  setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(s.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  return true;
}

}  // namespace

std::string HttpReply::Header(const std::string& name) const {
  for (const auto& [n, v] : headers) {
    if (boost::iequals(n, name)) return v;
  }
  return {};
}

HttpReply HttpRequest(int port, const HttpRequestSpec& spec) {
  HttpReply reply;
  asio::io_context io;
  tcp::socket s(io);
  if (!Connect(s, port, spec.timeout, reply.error)) return reply;
  http::request<http::string_body> request{http::string_to_verb(spec.method), spec.target, 11};
  request.set(http::field::host, spec.host);
  for (const auto& [name, value] : spec.headers) request.insert(name, value);
  request.body() = spec.body;
  if (!spec.body.empty() || spec.method == "POST" || spec.method == "PUT")
    request.prepare_payload();
  request.keep_alive(false);
  boost::system::error_code ec;
  auto sent = std::chrono::steady_clock::now();
  // The request goes out on its own thread while the response comes in, as a browser or curl
  // does: an echoing origin would otherwise fill both directions' buffers and stall.
  boost::system::error_code write_ec;
  std::thread writer([&] { http::write(s, request, write_ec); });
  struct Join {
    std::thread& t;
    ~Join() { t.join(); }
  } join{writer};
  beast::flat_buffer buffer;
  http::response_parser<http::buffer_body> parser;
  parser.body_limit(std::uint64_t{1} << 40);
  if (spec.method == "HEAD") parser.skip(true);
  http::read_header(s, buffer, parser, ec);
  if (ec) {
    reply.error = "read head: " + ec.message();
    s.shutdown(tcp::socket::shutdown_both, ec);
    return reply;
  }
  reply.status = parser.get().result_int();
  for (const auto& field : parser.get()) {
    reply.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  std::vector<char> chunk(256 * 1024);
  while (!parser.is_done()) {
    parser.get().body().data = chunk.data();
    parser.get().body().size = chunk.size();
    http::read_some(s, buffer, parser, ec);
    if (ec == http::error::need_buffer) ec = {};
    std::size_t n = chunk.size() - parser.get().body().size;
    if (n > 0) {
      reply.body.append(chunk.data(), n);
      reply.arrivals_ms.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - sent)
              .count());
    }
    if (ec) {
      reply.error = "read body: " + ec.message();
      break;
    }
  }
  // A response may end before the request was sent in full (e.g. an error page).
  boost::system::error_code ignored;
  s.shutdown(tcp::socket::shutdown_both, ignored);
  return reply;
}

std::vector<std::string> WebSocketExchange(int port, const std::string& host,
                                           const std::string& target,
                                           const std::vector<std::string>& messages,
                                           std::string& error) {
  std::vector<std::string> replies;
  asio::io_context io;
  beast::websocket::stream<tcp::socket> ws(io);
  if (!Connect(ws.next_layer(), port, std::chrono::seconds(20), error)) return replies;
  boost::system::error_code ec;
  ws.handshake(host, target, ec);
  if (ec) {
    error = "handshake: " + ec.message();
    return replies;
  }
  for (const auto& message : messages) {
    ws.text(true);
    ws.write(asio::buffer(message), ec);
    if (ec) {
      error = "write: " + ec.message();
      return replies;
    }
    beast::flat_buffer buffer;
    ws.read(buffer, ec);
    if (ec) {
      error = "read: " + ec.message();
      return replies;
    }
    replies.push_back(beast::buffers_to_string(buffer.data()));
  }
  ws.close(beast::websocket::close_code::normal, ec);
  return replies;
}

}  // namespace tunnelkit::test
