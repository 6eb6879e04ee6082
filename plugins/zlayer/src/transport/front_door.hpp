// The server's one public port (`--listen`), owned by asio. Each connection gets TLS (when
// configured) and its HTTP upgrade head read here, then goes one of two ways:
// - a data-plane upgrade (Sec-WebSocket-Protocol: tunnelkit-data.v2, sent only by our agent)
//   is accepted with Beast and handed over as a DataSocket;
// - anything else is a control connection for libwebsockets: the caller adopts the given fd
//   with the bytes already read. Plain ws: the accepted socket's own fd. wss: one end of a
//   socketpair, while this class relays the TLS stream to the other end (control traffic is
//   small), so lws never sees TLS.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>

#include "transport/data_link.hpp"
#include "transport/data_socket.hpp"
#include "tunnelkit/net/connection_limiter.hpp"
#include "tunnelkit/net/listener.hpp"
#include "tunnelkit/rate_limited_log.hpp"

namespace spdlog {
class logger;
}

namespace tunnelkit {
class Deadline;
class TcpStream;
class TlsStream;
}  // namespace tunnelkit

namespace tunnelkit::zlayer::transport {

// What the server makes of the link credential (data_link.hpp) in a data upgrade's head.
struct DataLinkAdmission {
  enum class Verdict {
    kNone,      // no credential (or the link is at its own cap): counted by source, as before
    kAdmitted,  // a live link's credential: released from the source's pre-auth budget
    kRefused,   // a credential that names no live link or carries a wrong secret: closed
  };
  Verdict verdict = Verdict::kNone;
  // kAdmitted: the upgrade's slot in its link's own budget, held until DataAttach.
  net::ConnectionLimiter::Lease link_slot;
};

struct FrontDoorOptions {
  std::string host;      // "" or "0.0.0.0": every interface
  int port = 0;          // 0: an ephemeral port
  std::string tls_cert;  // PEM files; both empty: plain ws
  std::string tls_key;
  // TLS handshake + upgrade head, and the data upgrade, must complete within this.
  std::chrono::milliseconds head_timeout{10000};
  // Connections in that phase (before they are handed over), overall and per source.
  net::ConnectionLimits unauthenticated{256, 16};
  // Asked at accept: false closes the connection before anything is read (a source that
  // spent its authentication failures). Empty: every source is admitted.
  std::function<bool(const boost::asio::ip::address&)> admit;
  // Asked once a data upgrade's head is read, with its credential (null: none was sent).
  // Empty: every data upgrade is counted by its source until it is handed over.
  std::function<DataLinkAdmission(const DataLinkCredential* credential,
                                  const boost::asio::ip::address& source, const std::string& peer)>
      admit_data_link;
};

class FrontDoor {
 public:
  // `admission`: what admit_data_link said (its link slot goes with the socket).
  using DataHandler = std::function<void(std::shared_ptr<DataSocket>, DataLinkAdmission admission)>;
  // Takes ownership of `fd`; `head` holds the bytes already read from the connection.
  using ControlHandler = std::function<void(int fd, std::string head, std::string peer)>;

  FrontDoor(boost::asio::io_context& io, std::shared_ptr<spdlog::logger> logger);
  ~FrontDoor();
  FrontDoor(const FrontDoor&) = delete;
  FrontDoor& operator=(const FrontDoor&) = delete;

  // Binds and starts accepting; false with a one-line reason (address in use, bad cert...).
  bool Start(const FrontDoorOptions& options, DataHandler on_data, ControlHandler on_control,
             std::string& error);
  // Stops accepting (connections already handed over are not touched).
  void Stop();
  int port() const { return port_; }
  std::size_t unauthenticated() const { return unauthenticated_.active(); }
  const net::Listener& listener() const { return listener_; }
  bool tls() const { return tls_context_ != nullptr; }

  // Largest upgrade head accepted (lws takes at most 2048 bytes of already-read input).
  static constexpr std::size_t kMaxControlHead = 2048;
  static constexpr std::size_t kMaxHead = 8192;

 private:
  void OnAccept(boost::asio::ip::tcp::socket socket);
  boost::asio::awaitable<void> Serve(boost::asio::ip::tcp::socket socket,
                                     net::ConnectionLimiter::Lease unauthenticated);
  // A control connection's head is read: the socket goes to libwebsockets (for wss, one end of
  // a socketpair, with the TLS stream relayed to the other).
  boost::asio::awaitable<void> ServeControl(std::string head, std::string peer,
                                            std::unique_ptr<TcpStream> tcp,
                                            std::unique_ptr<TlsStream> tls, Deadline& deadline,
                                            net::ConnectionLimiter::Lease& unauthenticated);

  boost::asio::io_context& io_;
  std::shared_ptr<spdlog::logger> log_;
  FrontDoorOptions options_;
  net::Listener listener_;
  net::ConnectionLimiter unauthenticated_;
  RateLimitedLog refusal_log_{std::chrono::seconds(5)};
  std::shared_ptr<boost::asio::ssl::context> tls_context_;
  DataHandler on_data_;
  ControlHandler on_control_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  int port_ = 0;
};

}  // namespace tunnelkit::zlayer::transport
