// The one TCP listener of the project: opens, binds and listens on an endpoint, then accepts
// until closed. Accept errors that pass (out of descriptors or kernel memory, an aborted
// connection, a firewall's EPERM) never end the loop: it waits a short, growing pause (so a
// process out of descriptors does not spin) and tries again; the warning is rate-limited.
// Only closing the listener ends it. Every server (ferro, zlayer, admin, hello, cfedge) uses
// it instead of its own acceptor code.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/system/error_code.hpp>

namespace spdlog {
class logger;
}

namespace tunnelkit::net {

// True for accept errors that say nothing about the listener itself and may pass: EMFILE,
// ENFILE, ENOBUFS, ENOMEM, ECONNABORTED, EPERM, EPROTO, EINTR, EAGAIN, ETIMEDOUT, and the
// network errors Linux reports on accept for a connection that already failed.
bool IsTransientAcceptError(const boost::system::error_code& ec);

struct ListenerOptions {
  std::string name = "listener";              // for log lines: "<name>: accept failed: ..."
  std::shared_ptr<spdlog::logger> logger;     // null: spdlog's default logger
  std::chrono::milliseconds min_pause{10};    // after the first transient error
  std::chrono::milliseconds max_pause{1000};  // the pause doubles up to this
  std::chrono::milliseconds log_interval{std::chrono::seconds(5)};  // one warning per interval
};

struct ListenerStats {
  std::uint64_t accepted = 0;
  std::uint64_t transient_errors = 0;
  std::uint64_t log_lines = 0;  // accept warnings actually written
};

class Listener {
 public:
  using Handler = std::function<void(boost::asio::ip::tcp::socket)>;

  explicit Listener(boost::asio::any_io_executor executor);
  ~Listener();  // closes
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  // Opens, sets SO_REUSEADDR, binds and listens. False with `error` ("cannot listen on
  // 127.0.0.1:80: Permission denied") on failure, the listener closed.
  bool Open(const boost::asio::ip::tcp::endpoint& endpoint, std::string& error);
  // The same, returning the error code (success: a default one).
  boost::system::error_code Open(const boost::asio::ip::tcp::endpoint& endpoint);
  // Starts the accept loop: `on_socket` gets every accepted connection, until Close(). The
  // handler is never called after Close().
  void Start(Handler on_socket, ListenerOptions options = {});
  void Close();

  bool is_open() const;
  // The bound endpoint (port 0 resolved); a default endpoint when closed.
  boost::asio::ip::tcp::endpoint local_endpoint() const;
  std::uint16_t port() const { return local_endpoint().port(); }
  const ListenerStats& stats() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace tunnelkit::net
