// The FerroTunnel-compatible client: dials the server, handshakes, sends heartbeats, serves
// every server-opened stream from the local origin, and reconnects with backoff. A rejected
// token or version is a permanent failure (no retry loop).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "tunnelkit/session/supervisor.hpp"
#include "tunnelkit/stream.hpp"
#include "tunnelkit/stream/tls_context.hpp"

namespace spdlog {
class logger;
}

namespace tunnelkit::ferro {

class Connection;
class MuxStream;

struct ClientSettings {
  std::string server;  // HOST:PORT
  std::string token;
  std::optional<std::string> tunnel_id;
  std::string origin_host = "127.0.0.1";  // where streams are served from
  std::string origin_port = "8000";
  bool tls = false;
  TlsClientOptions tls_settings;  // the client makes it TLS 1.3 only
  std::string tls_server_name;    // default: the host of `server`
  std::chrono::milliseconds heartbeat_interval{std::chrono::seconds(30)};
  std::chrono::milliseconds handshake_timeout{std::chrono::seconds(10)};
  session::BackoffPolicy backoff;
  bool flow_control = true;   // advertise "tk-flow"
  bool kernel_splice = true;  // plain TCP: move bulk payloads with splice(2) (KernelPipe)
};

// How a stream reaches the origin. The default dials origin_host:origin_port and splices.
using StreamServer = std::function<boost::asio::awaitable<void>(std::shared_ptr<MuxStream>)>;

enum class ClientExit {
  kStopped = 0,   // Stop() was called
  kRejected = 1,  // permanent: token or version refused
  kAttemptsExhausted = 2,
};

class FerroClient : public std::enable_shared_from_this<FerroClient> {
 public:
  FerroClient(boost::asio::io_context& io, ClientSettings settings,
              std::shared_ptr<spdlog::logger> logger);
  ~FerroClient();

  void SetStreamServer(StreamServer server) { stream_server_ = std::move(server); }
  // Runs the reconnect loop (session::Supervisor) until stopped, a permanent failure (token or
  // version refused) or the retry budget is spent.
  boost::asio::awaitable<session::SupervisorResult> Run();
  void Stop();
  // Payload bytes the current connection moved without copying them (kernel path).
  std::uint64_t spliced_bytes() const;
  // Streams the current connection holds open (0 without one): tests, diagnostics.
  std::size_t stream_count() const;

 private:
  boost::asio::awaitable<session::SessionOutcome> ConnectOnce(session::SessionControl& control);
  boost::asio::awaitable<std::unique_ptr<Stream>> Dial(std::string& reason);
  // Until the connection closes; the session cancels `timer` when it ends.
  boost::asio::awaitable<void> Heartbeats(std::shared_ptr<Connection> connection,
                                          std::shared_ptr<boost::asio::steady_timer> timer);
  boost::asio::awaitable<void> ServeStream(std::shared_ptr<MuxStream> stream);

  boost::asio::io_context& io_;
  ClientSettings settings_;
  std::shared_ptr<spdlog::logger> logger_;
  std::shared_ptr<boost::asio::ssl::context> tls_;
  StreamServer stream_server_;
  std::unique_ptr<session::Supervisor> supervisor_;
  std::weak_ptr<Connection> connection_;
  bool stopped_ = false;
};

}  // namespace tunnelkit::ferro
