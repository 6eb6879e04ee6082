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
  bool stopped_ = false;
};

}  // namespace tunnelkit::ferro
