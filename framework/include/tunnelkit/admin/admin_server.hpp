// The admin HTTP endpoint (Boost.Beast on the caller's io_context): /metrics, /healthz,
// /ready, /tunnels, plus GET routes that backends register (/quicktunnel, ...).
//
//   /metrics   200, Prometheus text format 0.0.4 of the registry
//   /healthz   200 "ok"
//   /ready     200 {"status":200,"readyConnections":N} when the readiness function says ready,
//              else 503 {"status":503,"readyConnections":N}; 503 when no function is set
//   /tunnels   200, JSON array from the tunnels function ("[]" when none)
//   other      404; methods other than GET/HEAD: 405
// Connections are HTTP/1.1 with keep-alive, an idle timeout, and a limit on header size.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "tunnelkit/net/listener.hpp"

namespace spdlog {
class logger;
}

namespace tunnelkit::metrics {
class Registry;
}

namespace tunnelkit::admin {

struct Response {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::string body;
};

// A JSON route: returns the body (a JSON text) or a full Response.
using JsonHandler = std::function<std::string()>;
using Handler = std::function<Response()>;

struct Readiness {
  bool ready = false;
  std::uint32_t connections = 0;  // reported as readyConnections
};

class AdminServer {
 public:
  AdminServer(boost::asio::io_context& io, metrics::Registry& registry,
              std::shared_ptr<spdlog::logger> logger);
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // Binds HOST:PORT (port 0: ephemeral) and starts accepting on the io_context. Returns an
  // empty string on success, else a one-line reason ("127.0.0.1:80: Permission denied").
  std::string Listen(const std::string& host_port);
  // The bound address (valid after a successful Listen).
  boost::asio::ip::tcp::endpoint endpoint() const { return endpoint_; }
  // Stops accepting and closes every open connection. Safe to call twice.
  void Stop();

  // Handlers run on the io_context's thread. Paths are exact ("/quicktunnel"); a later
  // registration of the same path replaces the earlier one, built-in paths included.
  void AddRoute(const std::string& path, Handler handler);
  void AddJsonRoute(const std::string& path, JsonHandler handler);
  void SetReadiness(std::function<Readiness()> readiness);
  void SetTunnels(JsonHandler tunnels_json_array);

  // The response for a GET of `target` (path with optional query), without any socket.
  Response Handle(const std::string& target) const;

 private:
  class Connection;

  boost::asio::io_context& io_;
  metrics::Registry& registry_;
  std::shared_ptr<spdlog::logger> logger_;
  net::Listener listener_;
  boost::asio::ip::tcp::endpoint endpoint_;
  std::map<std::string, Handler> routes_;
  std::function<Readiness()> readiness_;
  JsonHandler tunnels_;
  std::set<std::shared_ptr<Connection>> connections_;
  bool stopped_ = false;
};

}  // namespace tunnelkit::admin
