#include "admin_exchange.hpp"

namespace tunnelkit::admin {

namespace http = boost::beast::http;

void LimitRequest(http::request_parser<http::empty_body>& parser) {
  parser.header_limit(kHeaderLimit);
  parser.body_limit(0);
}

AdminResponse Respond(const AdminRequest& request,
                      const std::function<Response(const std::string&)>& handle) {
  AdminResponse response;
  response.version(request.version());
  response.set(http::field::server, "tunnelkit");
  response.set(http::field::cache_control, "no-store");
  if (request.method() != http::verb::get && request.method() != http::verb::head) {
    response.result(http::status::method_not_allowed);
    response.set(http::field::allow, "GET, HEAD");
    response.set(http::field::content_type, "text/plain");
    response.body() = "method not allowed\n";
  } else {
    Response r = handle(std::string(request.target()));
    response.result(r.status);
    response.set(http::field::content_type, r.content_type);
    response.body() = std::move(r.body);
  }
  response.keep_alive(request.keep_alive());
  response.prepare_payload();
  if (request.method() == http::verb::head) response.body().clear();
  return response;
}

}  // namespace tunnelkit::admin
