// One request/response exchange of the admin endpoint without the socket: how a request is
// parsed (bounded head, no body) and the response it gets. The connection in admin_server.cpp
// does the I/O around these, so the handling of untrusted bytes can be tested and fuzzed alone.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include "tunnelkit/admin/admin_server.hpp"

namespace tunnelkit::admin {

inline constexpr std::uint32_t kHeaderLimit = 8 * 1024;

using AdminRequest = boost::beast::http::request<boost::beast::http::empty_body>;
using AdminResponse = boost::beast::http::response<boost::beast::http::string_body>;

// Sets the limits of a parser for one admin request.
void LimitRequest(boost::beast::http::request_parser<boost::beast::http::empty_body>& parser);

// The response to `request`: GET and HEAD go to `handle` with the target (path and query),
// other methods get 405. Keep-alive follows the request; a HEAD response has no body.
AdminResponse Respond(const AdminRequest& request,
                      const std::function<Response(const std::string&)>& handle);

}  // namespace tunnelkit::admin
