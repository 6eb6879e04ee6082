// libwebsockets in its own thread (Debian's 4.1.6 cannot share asio's loop). One context per
// WsLoop: optionally a listening vhost (ws or wss) and a client vhost (ws/wss dials, verifying
// the server with a CA file or the system roots unless told not to).
//
// Threads: lws_cancel_service is the only lws call made from the io_context thread; it rings
// the doorbell after commands were queued under a mutex. Everything lws reports travels back
// with asio::post.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

#include "transport/ws_connection.hpp"
#include "transport/ws_url.hpp"

struct lws_context;
struct lws_vhost;

namespace tunnelkit::zlayer::transport {

struct WsServerOptions {
  std::string host;      // "" or "0.0.0.0": every interface
  int port = 0;          // 0: an ephemeral port (see WsLoop::listen_port)
  std::string tls_cert;  // PEM files; both empty: plain ws
  std::string tls_key;
  // No listener of its own: the server vhost only serves sockets handed over with Adopt
  // (host, port and TLS are then ignored).
  bool adopt_only = false;
  // Peers must authenticate (WsConnection::Authenticated) before they get the full message
  // size and read-ahead; until then both are kWsUnauthenticatedMaxMessage.
  bool small_until_authenticated = false;
  // With small_until_authenticated: libwebsockets itself drops a connection still not
  // authenticated this long after its upgrade, whatever state its reading or closing is in
  // (the server's own auth timeout, shorter, closes it gracefully first). 0: none.
  std::chrono::seconds unauthenticated_deadline{0};
};

struct WsClientOptions {
  std::string tls_ca;            // PEM roots for wss://; empty: the system's roots
  bool tls_skip_verify = false;  // accept any certificate (the caller warns loudly)
  // wss:// dials. false: no client TLS context, whose creation (libwebsockets loads the
  // system's roots into it) costs about 100 ms of CPU per loop; wss:// dials are then refused.
  bool tls = true;
};

class WsLoop {
 public:
  using AcceptHandler = std::function<void(std::shared_ptr<WsConnection>)>;

  explicit WsLoop(boost::asio::io_context& io);
  ~WsLoop();
  WsLoop(const WsLoop&) = delete;
  WsLoop& operator=(const WsLoop&) = delete;

  // Creates the context and vhosts and starts the service thread. Returns false with a one-line
  // reason (unreadable certificate, port in use...).
  bool Start(const std::optional<WsServerOptions>& server, AcceptHandler on_accept,
             const std::optional<WsClientOptions>& client, std::string& error);
  // Stops the thread and closes every connection (idempotent). Call from the io_context.
  void Stop();
  // The listening port (after Start with a server), useful with port 0.
  int listen_port() const { return listen_port_; }

  // Dials `url`; the connection is open when it returns, or null with `error` set.
  boost::asio::awaitable<std::shared_ptr<WsConnection>> Connect(const WsUrl& url,
                                                                std::string& error);

  // False once this loop is destroyed (connections may outlive it).
  std::shared_ptr<const bool> alive_token() const { return alive_; }

  // Asio side: asks the lws thread to look at this connection (write, close, resume reads).
  void Ring(const std::shared_ptr<WsShared>& shared);

  // Hands an accepted socket to the server vhost, as if its own listener had accepted it;
  // `head` (at most 2048 bytes) is what was already read from it. Takes ownership of `fd`.
  // `peer` names the client in logs (the fd may be one end of a socketpair).
  void Adopt(int fd, std::string head, std::string peer);

  // The lws callback (lws thread only).
  int Handle(struct lws* wsi, int reason, void* user, void* in, std::size_t len);

 private:
  struct ConnectRequest {
    std::shared_ptr<WsShared> shared;
    WsUrl url;
  };
  struct AdoptRequest {
    int fd = -1;
    std::string head;
    std::string peer;
  };
  void DrainDoorbell();
  // Handle's parts: the connection state of `wsi` (null once finished); a server connection
  // upgraded; received bytes; queued messages to write.
  std::shared_ptr<WsShared> FindShared(struct lws* wsi) const;
  int OnEstablished(struct lws* wsi);
  int OnReceive(struct lws* wsi, const void* in, std::size_t len);
  int OnWriteable(struct lws* wsi);
  void Deliver(const std::shared_ptr<WsShared>& shared);
  void Finish(const std::shared_ptr<WsShared>& shared, std::string reason);
  void ThreadMain();

  boost::asio::io_context& io_;
  struct lws_context* context_ = nullptr;
  struct lws_vhost* server_vhost_ = nullptr;
  struct lws_vhost* client_vhost_ = nullptr;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  bool started_ = false;
  int listen_port_ = 0;
  bool small_until_authenticated_ = false;
  std::chrono::seconds unauthenticated_deadline_{0};
  AcceptHandler on_accept_;
  std::optional<WsClientOptions> client_options_;

  std::mutex doorbell_mu_;
  std::vector<std::shared_ptr<WsShared>> rung_;   // guarded by doorbell_mu_
  std::vector<ConnectRequest> connect_requests_;  // guarded by doorbell_mu_
  std::vector<AdoptRequest> adopt_requests_;      // guarded by doorbell_mu_

  // lws thread only: keeps each live connection's shared state alive while lws holds a raw
  // pointer to it.
  std::vector<std::shared_ptr<WsShared>> live_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  // lws thread only: the client address of adopted sockets until they become WebSockets.
  std::map<struct lws*, std::string> adopted_peers_;
  const std::string* adopting_peer_ = nullptr;  // during lws_adopt_socket_vhost_readbuf
};

}  // namespace tunnelkit::zlayer::transport
