// `tunnelctl access --backend zlayer`: a local port forward with a time to live, as ZLayer's
// `zlayer tunnel access` (each local connection is dialled straight to the endpoint). Unlike
// upstream, the TTL also ends connections that are still open when it expires.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <set>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "tunnelkit/net/listener.hpp"

namespace spdlog {
class logger;
}

namespace tunnelkit {
class TcpStream;
}

namespace tunnelkit::zlayer {

struct AccessOptions {
  std::string endpoint_host;
  std::string endpoint_port;
  std::string local_host = "127.0.0.1";
  int local_port = 0;
  std::chrono::milliseconds ttl{0};  // 0: no expiry
  std::chrono::milliseconds connect_timeout{10000};
};

class AccessForwarder {
 public:
  AccessForwarder(boost::asio::io_context& io, AccessOptions options,
                  std::shared_ptr<spdlog::logger> logger);
  ~AccessForwarder();
  bool Start(std::string& error);
  int local_port() const { return local_port_; }
  // Closes the listener and every open connection; `on_done` runs once everything ended.
  void Stop(const std::string& reason);
  void OnDone(std::function<void()> on_done) { on_done_ = std::move(on_done); }

 private:
  boost::asio::awaitable<void> Forward(boost::asio::ip::tcp::socket socket);

  boost::asio::io_context& io_;
  AccessOptions options_;
  std::shared_ptr<spdlog::logger> log_;
  net::Listener listener_;
  boost::asio::steady_timer ttl_timer_;
  std::set<std::shared_ptr<TcpStream>> open_;
  std::function<void()> on_done_;
  int local_port_ = 0;
  bool stopped_ = false;
};

}  // namespace tunnelkit::zlayer
