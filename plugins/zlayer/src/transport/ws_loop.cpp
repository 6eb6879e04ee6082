#include "transport/ws_loop.hpp"

#include <libwebsockets.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <cstring>

#include <unistd.h>

namespace tunnelkit::zlayer::transport {

namespace asio = boost::asio;

namespace {

int LwsCallback(struct lws* wsi, enum lws_callback_reasons reason, void* user, void* in,
                std::size_t len) {
  auto* context = lws_get_context(wsi);
  auto* self = context ? static_cast<WsLoop*>(lws_context_user(context)) : nullptr;
  if (self == nullptr) return lws_callback_http_dummy(wsi, reason, user, in, len);
  return self->Handle(wsi, reason, user, in, len);
}

constexpr std::size_t kRxBufferSize = 16 * 1024;
constexpr std::size_t kTxPacketSize = 256 * 1024;
// The per-thread buffer lws reads sockets into (default 4 KiB: one read() per 4 KiB).
constexpr unsigned kServiceBufferSize = 64 * 1024;

// lws keeps raw pointers into this table for the context's lifetime.
const lws_protocols kProtocols[] = {
    // rx_buffer_size: what lws holds per connection for received payload (a larger message
    // arrives in several RECEIVE callbacks); tx_packet_size: one send() may carry a whole
    // data message (WsStream::kChunk).
    {"zlayer", &LwsCallback, 0, kRxBufferSize, 0, nullptr, kTxPacketSize},
    {nullptr, nullptr, 0, 0, 0, nullptr, 0},
};

std::once_flag lws_log_once;

// lws 4.1.6 logs a debugging line at error level for every adopted socket with a read buffer
// ("adopt_socket_readbuf: calling service"): dropped; everything else goes to stderr as lws's
// own emitter would.
void EmitLwsLog(int level, const char* line) {
  if (std::strstr(line, "adopt_socket_readbuf: calling service") != nullptr) return;
  lwsl_emit_stderr(level, line);
}

// lws 4.1.6 creates a vhost even when its certificate cannot be loaded; check first so that a
// bad --tls-cert/--tls-key is a start error naming the file.
bool CheckCertificatePair(const std::string& cert, const std::string& key, std::string& error) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) {
    error = "OpenSSL: cannot create a TLS context";
    return false;
  }
  bool ok = true;
  if (SSL_CTX_use_certificate_chain_file(ctx, cert.c_str()) != 1) {
    error = "cannot load TLS certificate " + cert;
    ok = false;
  } else if (SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM) != 1) {
    error = "cannot load TLS key " + key;
    ok = false;
  } else if (SSL_CTX_check_private_key(ctx) != 1) {
    error = "TLS key " + key + " does not match certificate " + cert;
    ok = false;
  }
  SSL_CTX_free(ctx);
  ERR_clear_error();
  return ok;
}

}  // namespace

WsLoop::WsLoop(asio::io_context& io) : io_(io) {}

WsLoop::~WsLoop() {
  *alive_ = false;
  Stop();
}

bool WsLoop::Start(const std::optional<WsServerOptions>& server, AcceptHandler on_accept,
                   const std::optional<WsClientOptions>& client, std::string& error) {
  std::call_once(lws_log_once, [] { lws_set_log_level(LLL_ERR, &EmitLwsLog); });
  on_accept_ = std::move(on_accept);
  client_options_ = client;
  if (server && !server->adopt_only && (!server->tls_cert.empty() || !server->tls_key.empty())) {
    if (server->tls_cert.empty() || server->tls_key.empty()) {
      error = "TLS needs both a certificate and a key";
      return false;
    }
    if (!CheckCertificatePair(server->tls_cert, server->tls_key, error)) return false;
  }

  lws_context_creation_info info;
  std::memset(&info, 0, sizeof info);
  info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
  info.port = CONTEXT_PORT_NO_LISTEN;
  info.user = this;
  info.protocols = kProtocols;
  info.pt_serv_buf_size = kServiceBufferSize;
  context_ = lws_create_context(&info);
  if (context_ == nullptr) {
    error = "libwebsockets: could not create a context";
    return false;
  }
  if (server) {
    small_until_authenticated_ = server->small_until_authenticated;
    unauthenticated_deadline_ = server->unauthenticated_deadline;
    lws_context_creation_info v;
    std::memset(&v, 0, sizeof v);
    v.port = server->adopt_only ? CONTEXT_PORT_NO_LISTEN_SERVER : server->port;
    const bool any = server->host.empty() || server->host == "0.0.0.0" || server->host == "::";
    v.iface = any ? nullptr : server->host.c_str();
    v.protocols = kProtocols;
    v.vhost_name = "zlayer-server";
    v.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    if (!server->adopt_only && !server->tls_cert.empty()) {
      v.ssl_cert_filepath = server->tls_cert.c_str();
      v.ssl_private_key_filepath = server->tls_key.c_str();
    }
    server_vhost_ = lws_create_vhost(context_, &v);
    if (server_vhost_ == nullptr) {
      error = "cannot listen on " + (any ? std::string("*") : server->host) + ":" +
              std::to_string(server->port) +
              (server->tls_cert.empty() ? std::string() : " with the given TLS certificate/key") +
              " (address in use, bad interface, or unreadable certificate)";
      lws_context_destroy(context_);
      context_ = nullptr;
      return false;
    }
    if (!server->adopt_only) listen_port_ = lws_get_vhost_listen_port(server_vhost_);
  }
  if (client) {
    lws_context_creation_info v;
    std::memset(&v, 0, sizeof v);
    v.port = CONTEXT_PORT_NO_LISTEN;
    v.protocols = kProtocols;
    v.vhost_name = "zlayer-client";
    // Without this lws creates no client SSL_CTX for the vhost and wss:// dials fail.
    v.options = client->tls ? LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT : 0;
    if (!client->tls_ca.empty()) v.client_ssl_ca_filepath = client->tls_ca.c_str();
    client_vhost_ = lws_create_vhost(context_, &v);
    if (client_vhost_ == nullptr) {
      error = "libwebsockets: could not create the client side" +
              (client->tls_ca.empty() ? std::string()
                                      : " (unreadable --tls-ca " + client->tls_ca + ")");
      lws_context_destroy(context_);
      context_ = nullptr;
      return false;
    }
  }
  started_ = true;
  thread_ = std::thread([this] { ThreadMain(); });
  return true;
}

void WsLoop::ThreadMain() {
  while (!stopping_.load()) {
    if (lws_service(context_, 0) < 0) break;
  }
}

void WsLoop::Stop() {
  if (!started_) return;
  started_ = false;
  stopping_.store(true);
  lws_cancel_service(context_);
  if (thread_.joinable()) thread_.join();
  // Destroying the context closes every connection; its callbacks run here, on this thread,
  // now that the service thread is gone.
  lws_context_destroy(context_);
  context_ = nullptr;
  live_.clear();
  adopted_peers_.clear();
  std::lock_guard lock(doorbell_mu_);
  for (const auto& adoption : adopt_requests_) ::close(adoption.fd);
  adopt_requests_.clear();
}

void WsLoop::Ring(const std::shared_ptr<WsShared>& shared) {
  if (shared->rung.exchange(true)) return;  // already queued, not yet looked at
  {
    std::lock_guard lock(doorbell_mu_);
    rung_.push_back(shared);
  }
  if (started_) lws_cancel_service(context_);
}

void WsLoop::Adopt(int fd, std::string head, std::string peer) {
  if (!started_ || server_vhost_ == nullptr) {
    ::close(fd);
    return;
  }
  {
    std::lock_guard lock(doorbell_mu_);
    adopt_requests_.push_back({fd, std::move(head), std::move(peer)});
  }
  lws_cancel_service(context_);
}

asio::awaitable<std::shared_ptr<WsConnection>> WsLoop::Connect(const WsUrl& url,
                                                               std::string& error) {
  if (!started_ || client_vhost_ == nullptr) {
    error = "the WebSocket client is not running";
    co_return nullptr;
  }
  if (url.tls && client_options_ && !client_options_->tls) {
    error = "cannot dial " + url.ToString() + ": this WebSocket client was started without TLS";
    co_return nullptr;
  }
  auto shared = std::make_shared<WsShared>();
  auto conn = std::make_shared<WsConnection>(io_, *this, shared);
  shared->owner = conn;
  {
    std::lock_guard lock(doorbell_mu_);
    connect_requests_.push_back({shared, url});
  }
  lws_cancel_service(context_);
  auto& timer = conn->state_timer();
  timer.expires_after(std::chrono::seconds(15));
  boost::system::error_code ec;
  while (!conn->opened() && !conn->closed()) {
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (!ec) {  // the deadline passed, not a wake-up
      conn->Close();
      error = "timed out connecting to " + url.ToString();
      co_return nullptr;
    }
  }
  if (conn->closed()) {
    error = conn->close_reason();
    co_return nullptr;
  }
  co_return conn;
}

void WsLoop::DrainDoorbell() {
  std::vector<std::shared_ptr<WsShared>> rung;
  std::vector<ConnectRequest> requests;
  std::vector<AdoptRequest> adoptions;
  {
    std::lock_guard lock(doorbell_mu_);
    rung.swap(rung_);
    requests.swap(connect_requests_);
    adoptions.swap(adopt_requests_);
  }
  for (auto& adoption : adoptions) {
    // lws parses the head (and usually completes the upgrade) inside this call: the peer is
    // taken from adopting_peer_ then, from adopted_peers_ if the upgrade finishes later. On
    // failure lws has closed the fd already.
    adopting_peer_ = &adoption.peer;
    struct lws* wsi = lws_adopt_socket_vhost_readbuf(server_vhost_, adoption.fd,
                                                     adoption.head.data(), adoption.head.size());
    if (wsi != nullptr && adopting_peer_ != nullptr) adopted_peers_[wsi] = adoption.peer;
    adopting_peer_ = nullptr;
  }
  for (const auto& shared : rung) {
    shared->rung = false;  // before acting: a later ring must not be lost
    if (shared->finished || shared->wsi == nullptr) continue;
    if (shared->deadline_armed && shared->authenticated.load()) {
      shared->deadline_armed = false;
      lws_set_timeout(shared->wsi, NO_PENDING_TIMEOUT, 0);
    }
    if (shared->rx_paused && shared->inbox_bytes.load() < WsConnection::kLowWater) {
      shared->rx_paused = false;
      lws_rx_flow_control(shared->wsi, 1);
    }
    lws_callback_on_writable(shared->wsi);
  }
  for (auto& request : requests) {
    live_.push_back(request.shared);
    lws_client_connect_info info;
    std::memset(&info, 0, sizeof info);
    const std::string host = request.url.host;
    const std::string path = request.url.path;
    info.context = context_;
    info.vhost = client_vhost_;
    info.address = host.c_str();
    info.port = request.url.port;
    info.path = path.c_str();
    info.host = host.c_str();
    info.origin = host.c_str();
    info.local_protocol_name = kProtocols[0].name;
    info.opaque_user_data = request.shared.get();
    if (request.url.tls) {
      info.ssl_connection = LCCSCF_USE_SSL;
      if (client_options_ && client_options_->tls_skip_verify) {
        info.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK |
                               LCCSCF_ALLOW_EXPIRED | LCCSCF_ALLOW_INSECURE;
      }
    }
    if (lws_client_connect_via_info(&info) == nullptr) {
      Finish(request.shared, "cannot connect to " + request.url.ToString());
    }
  }
}

void WsLoop::Finish(const std::shared_ptr<WsShared>& shared, std::string reason) {
  if (shared->finished) return;
  shared->finished = true;
  shared->wsi = nullptr;
  asio::post(io_, [shared, reason = std::move(reason)]() mutable {
    if (auto conn = shared->owner.lock()) conn->OnClosed(std::move(reason));
  });
  std::erase(live_, shared);
}

void WsLoop::Deliver(const std::shared_ptr<WsShared>& shared) {
  std::vector<std::uint8_t> message;
  message.swap(shared->partial);
  shared->inbox_bytes += message.size();
  asio::post(io_, [shared, message = std::move(message)]() mutable {
    if (auto conn = shared->owner.lock()) {
      conn->OnMessage(std::move(message));
    } else {
      shared->inbox_bytes -= message.size();
    }
  });
  if (!shared->rx_paused && shared->inbox_bytes.load() > shared->high_water.load()) {
    shared->rx_paused = true;
    lws_rx_flow_control(shared->wsi, 0);
  }
}

std::shared_ptr<WsShared> WsLoop::FindShared(struct lws* wsi) const {
  auto* raw = static_cast<WsShared*>(lws_get_opaque_user_data(wsi));
  if (raw == nullptr) return nullptr;
  for (const auto& s : live_) {
    if (s.get() == raw) return s;
  }
  return nullptr;
}

int WsLoop::OnEstablished(struct lws* wsi) {
  auto shared = std::make_shared<WsShared>();
  shared->wsi = wsi;
  if (small_until_authenticated_) {  // until WsConnection::Authenticated
    shared->max_message = kWsUnauthenticatedMaxMessage;
    shared->high_water = kWsUnauthenticatedMaxMessage;
    if (unauthenticated_deadline_.count() > 0) {
      lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK,
                      static_cast<int>(unauthenticated_deadline_.count()));
      shared->deadline_armed = true;
    }
  }
  lws_set_opaque_user_data(wsi, shared.get());
  live_.push_back(shared);
  char peer_buf[128] = {0};
  std::string peer;
  if (adopting_peer_ != nullptr) {  // upgraded inside lws_adopt_socket_vhost_readbuf
    peer = *adopting_peer_;
    adopting_peer_ = nullptr;
    adopted_peers_.erase(wsi);
  } else if (const auto adopted = adopted_peers_.find(wsi); adopted != adopted_peers_.end()) {
    peer = std::move(adopted->second);
    adopted_peers_.erase(adopted);
  } else {
    lws_get_peer_simple(wsi, peer_buf, sizeof peer_buf);
    peer = peer_buf;
  }
  char uri[512] = {0};
  if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) < 0) uri[0] = 0;
  asio::post(io_, [this, shared, peer = std::move(peer), path = std::string(uri)] {
    auto conn = std::make_shared<WsConnection>(io_, *this, shared);
    shared->owner = conn;
    conn->OnOpen(peer, path);
    if (on_accept_) on_accept_(conn);
  });
  return 0;
}

int WsLoop::OnReceive(struct lws* wsi, const void* in, std::size_t len) {
  auto shared = FindShared(wsi);
  if (!shared) return -1;
  const auto* bytes = static_cast<const std::uint8_t*>(in);
  const std::size_t max_message = shared->max_message.load();
  // The frame's announced length counts too: a header that announces more than the limit
  // (a 1 TiB frame before Auth) is refused with its first bytes, not after the deadline.
  const std::size_t announced = len + lws_remaining_packet_payload(wsi);
  if (shared->partial.size() + announced > max_message) {
    lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, nullptr, 0);
    Finish(shared, "peer sent a message larger than " + std::to_string(max_message) + " bytes" +
                       (max_message < kWsMaxMessage ? " before authenticating" : ""));
    return -1;
  }
  shared->partial.insert(shared->partial.end(), bytes, bytes + len);
  if (lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0) {
    if (lws_frame_is_binary(wsi)) {
      Deliver(shared);
    } else {
      shared->partial.clear();  // text messages are ignored, as upstream does
    }
  }
  return 0;
}

int WsLoop::OnWriteable(struct lws* wsi) {
  auto shared = FindShared(wsi);
  if (!shared) return -1;
  // Write queued messages until the socket pushes back (or the queue is empty), not one
  // per callback: each trip through the service loop costs far more than a write.
  bool wrote = false;
  for (;;) {
    std::vector<std::uint8_t> message;
    bool close = false;
    {
      std::lock_guard lock(shared->mu);
      if (!shared->outbox.empty()) {
        message = std::move(shared->outbox.front());
        shared->outbox.pop_front();
      }
      close = shared->close_requested && shared->outbox.empty() && message.empty();
    }
    if (message.empty()) {
      if (close) {
        lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, nullptr, 0);
        Finish(shared, "closed");
        return -1;
      }
      break;
    }
    const std::size_t size = message.size() - LWS_PRE;
    const int written = lws_write(wsi, message.data() + LWS_PRE, size, LWS_WRITE_BINARY);
    shared->outbox_bytes -= size;
    wrote = true;
    if (written < static_cast<int>(size)) {
      Finish(shared, "write failed");
      return -1;
    }
    if (lws_send_pipe_choked(wsi)) {
      lws_callback_on_writable(wsi);  // the rest when the socket takes more
      break;
    }
  }
  if (wrote && shared->sender_waiting.load() &&
      shared->outbox_bytes.load() < WsConnection::kLowWater) {
    asio::post(io_, [shared] {
      if (auto conn = shared->owner.lock()) conn->OnDrained();
    });
  }
  return 0;
}

int WsLoop::Handle(struct lws* wsi, int reason, void* user, void* in, std::size_t len) {
  switch (reason) {
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
      DrainDoorbell();
      return 0;

    case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_CLIENT_VERIFY_CERTS:
      // No --tls-ca: verify against the system's roots.
      if (client_options_ && client_options_->tls_ca.empty() && user != nullptr) {
        SSL_CTX_set_default_verify_paths(static_cast<SSL_CTX*>(user));
      }
      return 0;

    case LWS_CALLBACK_ESTABLISHED:
      return OnEstablished(wsi);

    case LWS_CALLBACK_CLIENT_ESTABLISHED: {
      auto shared = FindShared(wsi);
      if (!shared) return -1;
      shared->wsi = wsi;
      char peer[128] = {0};
      lws_get_peer_simple(wsi, peer, sizeof peer);
      asio::post(io_, [shared, peer = std::string(peer)] {
        if (auto conn = shared->owner.lock()) conn->OnOpen(peer, "");
      });
      lws_callback_on_writable(wsi);  // anything queued while connecting
      return 0;
    }

    case LWS_CALLBACK_RECEIVE:
    case LWS_CALLBACK_CLIENT_RECEIVE:
      return OnReceive(wsi, in, len);

    case LWS_CALLBACK_SERVER_WRITEABLE:
    case LWS_CALLBACK_CLIENT_WRITEABLE:
      return OnWriteable(wsi);

    case LWS_CALLBACK_CLOSED:
    case LWS_CALLBACK_CLIENT_CLOSED: {
      if (auto shared = FindShared(wsi)) Finish(shared, "connection closed by the peer");
      return 0;
    }

    case LWS_CALLBACK_WSI_DESTROY:
      adopted_peers_.erase(wsi);
      break;

    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
      std::string why = in ? std::string(static_cast<const char*>(in), len) : "connection failed";
      while (!why.empty() && (why.back() == '\0' || why.back() == '\n')) why.pop_back();
      if (auto shared = FindShared(wsi)) Finish(shared, why);
      return 0;
    }

    default:
      break;
  }
  return lws_callback_http_dummy(wsi, static_cast<lws_callback_reasons>(reason), user, in, len);
}

}  // namespace tunnelkit::zlayer::transport
