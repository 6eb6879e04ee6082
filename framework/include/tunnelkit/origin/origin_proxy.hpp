// OriginProxy: hands requests that arrived through a tunnel to local services, chosen by the
// ingress Router. Three entry points fit the backends' styles:
//   ServeHttpStream  the tunnel stream carries raw HTTP/1.1 (ferro, zlayer)
//   ForwardRequest   the backend received the request head as metadata (cloudflare)
//   ServeTcp         raw byte splice to a tcp:// or unix: origin
// Bodies are streamed both ways with fixed-size buffers (never held whole), server-sent events
// are passed on chunk by chunk, WebSocket upgrades become a raw splice after the 101. A connect
// failure answers 502, no response head within response_timeout answers 504.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ssl/context.hpp>

#include "tunnelkit/origin/origin_pool.hpp"
#include "tunnelkit/origin/router.hpp"
#include "tunnelkit/stream.hpp"
#include "tunnelkit/stream/splice.hpp"

namespace spdlog {
class logger;
}

namespace tunnelkit::origin {

// Who sent the request, for X-Forwarded-For / X-Forwarded-Proto.
struct ClientInfo {
  std::string address;          // appended to X-Forwarded-For when not empty
  std::string scheme = "http";  // appended to X-Forwarded-Proto
};

using HeaderList = std::vector<std::pair<std::string, std::string>>;

// A request head delivered as metadata (cloudflare style).
struct RequestHead {
  std::string method = "GET";
  std::string target = "/";  // path and query ("/a?b=c"); an absolute URL is reduced to it
  std::string host;          // routing host; also sent as Host unless headers carry one
  HeaderList headers;
  ClientInfo client;
};

struct ResponseHead {
  int status = 0;
  std::string reason;
  HeaderList headers;  // hop-by-hop fields removed; Content-Length kept when known
  // Set when the proxy made this response because the origin failed (502 unreachable, 504
  // timeout): the reason in one line. Backends whose protocol carries origin errors apart from
  // responses (cloudflare's ConnectResponse.error) use it instead of the generated page.
  std::string proxy_error;
};

// Where ForwardRequest delivers the response: the head first, then the body bytes written to
// Body() and ended with Body().ShutdownWrite(). After a 101 (WebSocket), Body() carries the
// origin's bytes until the origin closes.
class ResponseWriter {
 public:
  virtual ~ResponseWriter() = default;
  virtual boost::asio::awaitable<boost::system::error_code> WriteHead(const ResponseHead& head) = 0;
  virtual Stream& Body() = 0;
};

struct ProxyStats {
  std::uint64_t requests = 0;
  std::uint64_t origin_connects = 0;  // new connections opened to origins
  std::uint64_t pooled_reuses = 0;    // requests served on a pooled connection
  std::uint64_t bad_gateway = 0;      // 502 answered
  std::uint64_t gateway_timeout = 0;  // 504 answered
};

class OriginProxy {
 public:
  OriginProxy(boost::asio::any_io_executor executor, Router router,
              std::shared_ptr<spdlog::logger> logger = nullptr);
  ~OriginProxy();
  OriginProxy(const OriginProxy&) = delete;
  OriginProxy& operator=(const OriginProxy&) = delete;

  // (a) Reads HTTP/1.1 requests from `stream` (`client` must outlive the call) (keep-alive loop),
  // routes each by Host and path, forwards it and writes the response back. Returns when the peer
  // closes the stream, after a non-keep-alive exchange, or on an error (the stream is then Reset).
  // Malformed requests get a 400 and end the loop.
  boost::asio::awaitable<void> ServeHttpStream(Stream& stream, const ClientInfo& client);
  boost::asio::awaitable<void> ServeHttpStream(Stream& stream);

  // (b) Forwards one request whose head is given as metadata. The request body is read from
  // `body_in` until eof (or Content-Length bytes); no body is read for GET/HEAD/DELETE/OPTIONS
  // without Content-Length or Transfer-Encoding. Errors of the origin become 502/504
  // responses through `out`; the returned code is set when the response could not be
  // delivered (or was cut short).
  boost::asio::awaitable<boost::system::error_code> ForwardRequest(const RequestHead& head,
                                                                   Stream& body_in,
                                                                   ResponseWriter& out);

  // (c) Connects to a tcp:// or unix: service and splices it with `stream` until both ends
  // finish. Connect failures Reset `stream` and are reported in the result's ec.
  // (No default argument: g++ 12 mishandles temporaries made inside a co_await expression.)
  boost::asio::awaitable<SpliceResult> ServeTcp(Stream& stream, const Service& service,
                                                const OriginOptions& options);
  boost::asio::awaitable<SpliceResult> ServeTcp(Stream& stream, const Service& service);
  // Same, choosing the service by hostname through the router (first rule for that host).
  boost::asio::awaitable<SpliceResult> ServeTcp(Stream& stream, std::string_view hostname);

  const Router& router() const { return router_; }
  OriginPool& pool() { return pool_; }
  const ProxyStats& stats() const { return stats_; }

 private:
  friend struct ProxyInternals;
  boost::asio::any_io_executor executor_;
  Router router_;
  std::shared_ptr<spdlog::logger> logger_;
  OriginPool pool_;
  // The pool key of each of router_'s rules (same order), made once: a request only looks it up.
  std::vector<std::string> pool_keys_;
  ProxyStats stats_;
  std::map<std::string, std::shared_ptr<boost::asio::ssl::context>> tls_contexts_;
};

}  // namespace tunnelkit::origin
