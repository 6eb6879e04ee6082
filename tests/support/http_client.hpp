// A small blocking HTTP/1.1 and WebSocket client for integration tests (Boost.Beast on a real
// loopback socket, every read bounded by a receive timeout). One request per connection.
#pragma once

#include <chrono>
#include <string>
#include <utility>
#include <vector>

namespace tunnelkit::test {

using HeaderPairs = std::vector<std::pair<std::string, std::string>>;

struct HttpRequestSpec {
  std::string method = "GET";
  std::string target = "/";
  std::string host;  // the Host header
  std::string body;
  HeaderPairs headers;
  std::chrono::seconds timeout{20};  // per read
};

struct HttpReply {
  int status = 0;  // 0 when `error` is set before a head arrived
  HeaderPairs headers;
  std::string body;
  std::string error;  // connect/read/write failure, one line
  // Milliseconds from sending the request to each body read that returned data: shows
  // whether a streamed body (server-sent events) arrived piece by piece.
  std::vector<double> arrivals_ms;
  std::string Header(const std::string& name) const;  // first value, case-insensitive
};

HttpReply HttpRequest(int port, const HttpRequestSpec& spec);

// Opens a WebSocket to ws://127.0.0.1:port<target> with Host `host`, sends each message as a
// text frame and reads one reply per message. Returns the replies (fewer on error, with `error`
// set).
std::vector<std::string> WebSocketExchange(int port, const std::string& host,
                                           const std::string& target,
                                           const std::vector<std::string>& messages,
                                           std::string& error);

}  // namespace tunnelkit::test
