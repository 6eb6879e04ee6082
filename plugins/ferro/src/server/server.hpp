// The FerroTunnel-compatible server: control listener for tunnel clients, public HTTP ingress
// routed by Host, optional raw TCP ingress.
#pragma once

#include <chrono>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>

#include "codec/frame.hpp"
#include "tunnelkit/net/connection_limiter.hpp"
#include "tunnelkit/net/listener.hpp"
#include "tunnelkit/net/server_limits.hpp"
#include "tunnelkit/net/source_rate_limiter.hpp"
#include "tunnelkit/rate_limited_log.hpp"
#include "tunnelkit/stream/tls_context.hpp"

namespace spdlog {
class logger;
}

namespace tunnelkit::ferro {

class Connection;

struct ServerSettings {
  std::string listen = "0.0.0.0:7835";
  std::string http;  // public HTTP ingress; empty: none
  std::string tcp;   // public raw TCP ingress; empty: none
  std::string token;
  std::string domain;                   // also route "<tunnel id>.<domain>"
  std::optional<TlsServerOptions> tls;  // the server makes it TLS 1.3 only
  std::chrono::milliseconds session_timeout{std::chrono::seconds(90)};
  std::chrono::milliseconds handshake_timeout{std::chrono::seconds(10)};
  std::chrono::milliseconds stream_open_timeout{std::chrono::seconds(10)};
  bool kernel_splice = true;  // plain TCP: move bulk payloads with splice(2) (KernelPipe)
  // Public HTTP exchanges: the longest pause allowed within a request body (then 408 and the
  // origin connection is released), and the longest wait for the response head after the
  // request's end (then 504).
  std::chrono::milliseconds request_body_timeout{std::chrono::seconds(30)};
  std::chrono::milliseconds response_timeout{std::chrono::seconds(60)};
  // A tunnel whose client left this recently answers 503 (it is expected back), not 404.
  std::chrono::milliseconds reconnect_grace{std::chrono::seconds(60)};
  // With tk-flow, the most a stream's receive window grows to, so the most of a response the
  // server holds for a public client that stopped reading (per public connection).
  std::uint32_t max_stream_window = 1024 * 1024;

  // What anonymous clients may hold (docs/reliability.md). Over the public caps HTTP gets a
  // 503 and TCP a close; a source out of authentication failures is closed at accept.
  net::ServerLimits limits;
};

// The largest frame a control connection may send before its Handshake is accepted. A
// Handshake within the field limits (token and tunnel id 256 bytes, 32 capabilities of 64)
// needs under 3 KiB.
inline constexpr std::uint32_t kMaxHandshakeFrame = 8 * 1024;

// "HOST:PORT", "[v6]:PORT" -> endpoint; throws std::invalid_argument naming the text.
boost::asio::ip::tcp::endpoint ParseListenAddress(const std::string& text);

class FerroServer : public std::enable_shared_from_this<FerroServer> {
 public:
  FerroServer(boost::asio::io_context& io, ServerSettings settings,
              std::shared_ptr<spdlog::logger> logger);
  ~FerroServer();

  // Binds every listener (throws std::runtime_error naming the address on failure) and starts
  // accepting.
  void Start();
  // Stops accepting and closes every session.
  void Stop();

  boost::asio::ip::tcp::endpoint control_endpoint() const;
  boost::asio::ip::tcp::endpoint http_endpoint() const;
  boost::asio::ip::tcp::endpoint tcp_endpoint() const;
  std::size_t session_count() const { return sessions_.size(); }
  // Streams open over all sessions (tests, diagnostics).
  std::size_t stream_count() const;
  std::size_t public_connections() const { return public_limiter_.active(); }
  std::uint64_t public_refusals() const { return public_limiter_.refused(); }
  std::size_t unauthenticated_connections() const { return preauth_limiter_.active(); }
  // Connections closed at accept because their source spent its authentication failures.
  std::uint64_t auth_refusals() const { return auth_failures_.refused(); }
  std::uint64_t auth_failure_log_lines() const { return auth_failure_log_.lines(); }
  const net::Listener& control_listener() const { return control_listener_; }
  // Payload bytes the live sessions moved without copying them (kernel path).
  std::uint64_t spliced_bytes() const;

 private:
  struct Session {
    std::string tunnel_id;
    Uuid session_id{};
    bool tcp = false;
    std::shared_ptr<Connection> connection;
  };

  void AcceptControl(boost::asio::ip::tcp::socket socket);
  boost::asio::awaitable<void> HandleControl(boost::asio::ip::tcp::socket socket,
                                             net::ConnectionLimiter::Lease unauthenticated);
  // Takes a public-connection lease, or refuses (`http`: with a 503) when there is none.
  std::optional<net::ConnectionLimiter::Lease> AdmitPublic(boost::asio::ip::tcp::socket& socket,
                                                           bool http);
  boost::asio::awaitable<void> HandleHttp(boost::asio::ip::tcp::socket socket);
  boost::asio::awaitable<void> HandleTcp(boost::asio::ip::tcp::socket socket);
  boost::asio::awaitable<void> SweepLoop();
  std::shared_ptr<Session> FindByHost(const std::string& host) const;
  std::shared_ptr<Session> FindTcpSession() const;
  // True when `host` names a tunnel whose client left less than reconnect_grace ago.
  bool RecentlyGone(const std::string& host) const;
  void Unregister(const std::shared_ptr<Session>& session, const std::string& reason);

  boost::asio::io_context& io_;
  ServerSettings settings_;
  std::shared_ptr<spdlog::logger> logger_;
  std::shared_ptr<boost::asio::ssl::context> tls_;
  net::Listener control_listener_;
  net::Listener http_listener_;
  net::Listener tcp_listener_;
  net::ConnectionLimiter public_limiter_;
  net::ConnectionLimiter preauth_limiter_;
  net::ConnectionLimiter busy_replies_;  // 503s being written: bounded too
  net::SourceRateLimiter auth_failures_;
  RateLimitedLog auth_failure_log_;
  RateLimitedLog auth_refusal_log_;
  RateLimitedLog preauth_refusal_log_;
  RateLimitedLog public_refusal_log_;
  boost::asio::steady_timer sweep_timer_;
  std::map<std::string, std::shared_ptr<Session>> by_tunnel_id_;
  std::list<std::shared_ptr<Session>> sessions_;  // registration order (TCP ingress picks first)
  static constexpr std::size_t kMaxRecentlyGone = 4096;
  std::map<std::string, std::chrono::steady_clock::time_point> recently_gone_;  // id -> until
  bool stopped_ = false;
};

}  // namespace tunnelkit::ferro
