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
#include "transport/tls.hpp"

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
  std::string domain;  // also route "<tunnel id>.<domain>"
  std::optional<ServerTlsSettings> tls;
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
};

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
  // Payload bytes the live sessions moved without copying them (kernel path).
  std::uint64_t spliced_bytes() const;

 private:
  struct Session {
    std::string tunnel_id;
    Uuid session_id{};
    bool tcp = false;
    std::shared_ptr<Connection> connection;
  };

  boost::asio::awaitable<void> AcceptControl();
  boost::asio::awaitable<void> HandleControl(boost::asio::ip::tcp::socket socket);
  boost::asio::awaitable<void> AcceptHttp();
  boost::asio::awaitable<void> HandleHttp(boost::asio::ip::tcp::socket socket);
  boost::asio::awaitable<void> AcceptTcp();
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
  boost::asio::ip::tcp::acceptor control_acceptor_;
  boost::asio::ip::tcp::acceptor http_acceptor_;
  boost::asio::ip::tcp::acceptor tcp_acceptor_;
  boost::asio::steady_timer sweep_timer_;
  std::map<std::string, std::shared_ptr<Session>> by_tunnel_id_;
  std::list<std::shared_ptr<Session>> sessions_;  // registration order (TCP ingress picks first)
  static constexpr std::size_t kMaxRecentlyGone = 4096;
  std::map<std::string, std::chrono::steady_clock::time_point> recently_gone_;  // id -> until
  bool stopped_ = false;
};

}  // namespace tunnelkit::ferro
