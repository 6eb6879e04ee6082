// One HTTP exchange of the server's public ingress over a tunnel stream: the request body
// from the public client to the stream, the response back, with the ingress's timeouts. Every
// way an exchange can fail before its response started gives the public client a status with
// a body, never a silent close:
//   408  the request body paused longer than request_body_timeout
//   504  the response head did not come within response_timeout of the request's end
//   502  the stream ended or failed before a response head (the tunnel's client went away,
//        or the origin closed without answering)
#pragma once

#include <chrono>
#include <memory>
#include <string_view>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "server/http_head.hpp"
#include "tunnelkit/stream.hpp"

namespace tunnelkit::ferro {

struct ExchangeTimeouts {
  std::chrono::milliseconds request_body{std::chrono::seconds(30)};
  std::chrono::milliseconds response_head{std::chrono::seconds(60)};
};

struct ExchangeRequest {
  std::string_view method;
  BodyFraming body;             // how the request body is delimited
  std::string_view body_start;  // bytes read past the head (the body's start, maybe more)
  bool keep_alive = false;      // the public connection may carry the next request
  ExchangeTimeouts timeouts;
};

// Relays one exchange; the request head has been written to `stream`. Returns true when the
// public connection can carry the next request (keep_alive, and the response's end was known
// and reached); otherwise the public connection has been closed.
boost::asio::awaitable<bool> RelayExchange(boost::asio::ip::tcp::socket& socket,
                                           std::shared_ptr<Stream> stream,
                                           const ExchangeRequest& request);

// Closes a public connection after its last response without losing that response:
// half-close, then drain what the client still sends (bounded) before closing.
boost::asio::awaitable<void> CloseGracefully(boost::asio::ip::tcp::socket& socket);

// Answers with a plain-text status and closes gracefully. `extra_headers`: whole lines
// ("Retry-After: 1\r\n").
boost::asio::awaitable<void> RespondAndClose(boost::asio::ip::tcp::socket& socket, int status,
                                             std::string_view reason, std::string_view body,
                                             std::string_view extra_headers = {});

}  // namespace tunnelkit::ferro
