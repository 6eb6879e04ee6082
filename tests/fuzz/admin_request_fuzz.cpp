// fuzz-links:
// fuzz-sources: framework/src/admin/admin_exchange.cpp
// The admin endpoint's requests as a client's bytes on one keep-alive connection, parsed with
// the connection's limits and answered as the connection answers them (admin_exchange: the
// route table behind it is a map lookup of the path and is replaced here by routes that answer
// by path, including a 404). Every answer serialises to a response that parses back with the
// same status and body, and a HEAD answer has no body.
#include <cstdint>
#include <cstdlib>
#include <sstream>
#include <string>
#include <string_view>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "admin/admin_exchange.hpp"

namespace http = boost::beast::http;
using namespace tunnelkit;

namespace {

// Answers like AdminServer::Handle: by the path (query dropped), 404 for unknown paths.
admin::Response Route(const std::string& target) {
  const std::string path = target.substr(0, target.find('?'));
  if (path == "/healthz") return {200, "text/plain", "ok"};
  if (path == "/ready") return {503, "application/json", R"({"status":503,"readyConnections":0})"};
  if (path == "/tunnels") return {200, "application/json", "[]"};
  return {404, "text/plain", "not found\n"};
}

void CheckResponse(const admin::AdminRequest& request, const admin::AdminResponse& response) {
  std::ostringstream wire;
  wire << response;
  const std::string bytes = wire.str();
  http::response_parser<http::string_body> parser;
  if (request.method() == http::verb::head) parser.skip(true);
  boost::system::error_code ec;
  std::size_t used = 0;
  while (used < bytes.size() && !parser.is_done()) {
    const std::size_t n =
        parser.put(boost::asio::buffer(bytes.data() + used, bytes.size() - used), ec);
    if (ec) std::abort();
    used += n;
    if (n == 0) break;
  }
  if (!parser.is_done()) std::abort();
  if (parser.get().result_int() != response.result_int()) std::abort();
  if (request.method() == http::verb::head) {
    if (!response.body().empty()) std::abort();
  } else if (parser.get().body() != response.body()) {
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  // Requests one after the other, as keep-alive reads them; stops where the connection would.
  while (!input.empty()) {
    http::request_parser<http::empty_body> parser;
    admin::LimitRequest(parser);
    boost::system::error_code ec;
    while (!input.empty() && !parser.is_done()) {
      const std::size_t n = parser.put(boost::asio::buffer(input.data(), input.size()), ec);
      input.remove_prefix(n);
      if (ec || n == 0) break;
    }
    if (ec || !parser.is_done()) return 0;
    const auto& request = parser.get();
    const auto response = admin::Respond(request, Route);
    CheckResponse(request, response);
    if (!response.keep_alive()) return 0;
  }
  return 0;
}
