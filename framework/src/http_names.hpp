// The short names the core's HTTP code (origin proxy, hello origin) writes: Asio, Beast and the
// coroutine helpers. Private to framework/src: a source (or a private header) brings them into
// its own namespace with `using namespace tunnelkit::http_names;`.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http.hpp>
#include <boost/system/error_code.hpp>

namespace tunnelkit::http_names {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using boost::asio::awaitable;
using boost::asio::redirect_error;
using boost::asio::use_awaitable;
using boost::system::error_code;

}  // namespace tunnelkit::http_names
