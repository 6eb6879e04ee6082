#include "tunnelkit/cloudflare/wire/quic/quic_connection.hpp"

#include <algorithm>
#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>

#include <gnutls/crypto.h>
#include <spdlog/spdlog.h>

#include "quic_callbacks.hpp"
#include "quic_internal.hpp"
#include "quic_tls.hpp"

namespace tunnelkit::cloudflare::quic {

namespace {

// Live connections, for tests that check nothing is leaked (connect/close churn).
std::atomic<std::size_t> live_connections{0};

// TUNNELKIT_QUIC_TRACE=1 prints ngtcp2's own packet and frame log to stderr (debugging only).
void TracePrintf(void*, const char* format, ...) {
  va_list ap;
  va_start(ap, format);
  std::vfprintf(stderr, format, ap);
  va_end(ap);
  std::fputc('\n', stderr);
}

// `path_payload`: the payload a known path carries (a loopback path's MTU), 0 if unknown.
void ApplySettings(ngtcp2_settings& settings, const QuicTransportOptions& t,
                   std::size_t path_payload = 0) {
  ngtcp2_settings_default(&settings);
  if (const char* trace = std::getenv("TUNNELKIT_QUIC_TRACE"); trace != nullptr && *trace == '1') {
    settings.log_printf = TracePrintf;
  }
  settings.initial_ts = Now();
  settings.max_tx_udp_payload_size = t.max_udp_payload;
  if (path_payload > t.max_udp_payload) {
    // The path's size is known, not discovered: use it as is (within the peer's limit).
    settings.max_tx_udp_payload_size = std::min(path_payload, kMaxUdpPayload);
    settings.no_tx_udp_payload_size_shaping = 1;
    settings.no_pmtud = 1;
  }
  settings.handshake_timeout = ToDuration(t.handshake_timeout);
}

void ApplyParams(ngtcp2_transport_params& params, const QuicTransportOptions& t) {
  ngtcp2_transport_params_default(&params);
  params.initial_max_stream_data_bidi_local = t.stream_receive_window;
  params.initial_max_stream_data_bidi_remote = t.stream_receive_window;
  params.initial_max_stream_data_uni = t.stream_receive_window;
  params.initial_max_data = t.connection_receive_window;
  params.initial_max_streams_bidi = t.max_incoming_bidi_streams;
  params.initial_max_streams_uni = 16;
  params.max_idle_timeout = ToDuration(t.idle_timeout);
  params.max_datagram_frame_size = t.max_datagram_frame_size;
}

}  // namespace

std::size_t QuicConnection::live() {
  return live_connections.load(std::memory_order_relaxed);
}

QuicConnection::QuicConnection(Role role, const asio::any_io_executor& ex,
                               std::shared_ptr<detail::UdpLink> link,
                               QuicTransportOptions transport)
    : role_(role),
      executor_(ex),
      link_(std::move(link)),
      transport_(transport),
      timer_(ex),
      handshake_wait_(ex),
      accept_wait_(ex),
      open_wait_(ex),
      closed_wait_(ex),
      tx_(std::max(kTxBufferSize * kMaxGsoSegments, kMaxUdpPayload)) {
  InitSignal(handshake_wait_);
  InitSignal(accept_wait_);
  InitSignal(open_wait_);
  InitSignal(closed_wait_);
  conn_ref_.get_conn = ConnOfRef;
  conn_ref_.user_data = this;
  live_connections.fetch_add(1, std::memory_order_relaxed);
}

QuicConnection::~QuicConnection() {
  live_connections.fetch_sub(1, std::memory_order_relaxed);
  if (conn_ != nullptr && !closed_) {
    // Last handle dropped while open: tell the peer instead of letting it time out.
    ngtcp2_connection_close_error ccerr;
    ngtcp2_connection_close_error_default(&ccerr);
    ngtcp2_connection_close_error_set_application_error(&ccerr, 0, nullptr, 0);
    SendConnectionClose(ccerr);
  }
  if (conn_ != nullptr) ngtcp2_conn_del(conn_);
  if (session_ != nullptr) gnutls_deinit(session_);
}

std::shared_ptr<QuicConnection> QuicConnection::CreateClient(const asio::any_io_executor& ex,
                                                             const udp::endpoint& remote,
                                                             const QuicClientOptions& options) {
  if (options.alpn.empty() || options.alpn.size() > 255) {
    throw QuicError(QuicErrc::kInvalidArgument, "alpn: must be 1 to 255 bytes");
  }
  if (options.sni.empty()) throw QuicError(QuicErrc::kInvalidArgument, "sni: must not be empty");
  auto credentials = TlsCredentials::ForClient(options);

  auto link = std::make_shared<detail::UdpLink>(ex);
  error_code ec;
  link->socket.open(remote.protocol(), ec);
  if (!ec) link->socket.connect(remote, ec);
  if (!ec) link->EnableGro();
  if (!ec) link->SetBuffers(options.transport.socket_buffer);
  if (!ec) link->socket.non_blocking(true, ec);
  if (ec) {
    throw QuicError(ec, "cannot set up a UDP socket to " + remote.address().to_string() + ":" +
                            std::to_string(remote.port()) + ": " + ec.message());
  }
  link->connected = true;
  // A loopback path's MTU is the loopback device's, known exactly: nothing to discover.
  std::size_t path_payload = 0;
  if (options.transport.loopback_mtu && remote.address().is_loopback()) {
    const std::size_t mtu = link->PathMtu();
    const std::size_t headers = remote.address().is_v6() ? 48 : 28;  // IP + UDP
    if (mtu > headers) path_payload = mtu - headers;
  }

  std::shared_ptr<QuicConnection> self(
      new QuicConnection(Role::kClient, ex, link, options.transport));
  self->credentials_ = credentials;
  self->local_ = link->socket.local_endpoint(ec);
  self->remote_ = remote;
  self->expected_alpn_ = options.alpn;
  self->verify_peer_ = options.verify_peer;
  if (!options.verify_peer) {
    spdlog::warn(
        "QUIC: certificate verification is DISABLED for {}:{}; the connection is not "
        "authenticated",
        remote.address().to_string(), remote.port());
  }

  ngtcp2_cid dcid, scid;
  dcid.datalen = kClientCidLen;
  Random(dcid.data, dcid.datalen);
  scid.datalen = kClientCidLen;
  Random(scid.data, scid.datalen);

  ngtcp2_settings settings;
  ApplySettings(settings, options.transport, path_payload);
  ngtcp2_transport_params params;
  ApplyParams(params, options.transport);
  ngtcp2_callbacks callbacks;
  FillCallbacks(callbacks, Role::kClient);

  ngtcp2_path path = PathOf(self->local_, self->remote_);
  int rv = ngtcp2_conn_client_new(&self->conn_, &dcid, &scid, &path, NGTCP2_PROTO_VER_V1,
                                  &callbacks, &settings, &params, nullptr, self.get());
  if (rv != 0) {
    throw QuicError(QuicErrc::kTransportError,
                    std::string("ngtcp2_conn_client_new: ") + ngtcp2_strerror(rv));
  }
  self->AttachTls(NewClientSession(*credentials, options), options.transport);
  self->StartReceive();
  self->Flush();  // the first Initial
  return self;
}

std::shared_ptr<QuicConnection> QuicConnection::CreateServer(
    const asio::any_io_executor& ex, std::shared_ptr<detail::UdpLink> link,
    const udp::endpoint& local, const udp::endpoint& remote, const ngtcp2_pkt_hd& hd,
    const QuicServerOptions& options, std::shared_ptr<TlsCredentials> credentials) {
  std::shared_ptr<QuicConnection> self(
      new QuicConnection(Role::kServer, ex, std::move(link), options.transport));
  self->credentials_ = credentials;
  self->local_ = local;
  self->remote_ = remote;
  self->expected_alpn_ = options.alpn;

  ngtcp2_cid scid;
  scid.datalen = detail::kServerCidLength;
  Random(scid.data, scid.datalen);

  ngtcp2_settings settings;
  ApplySettings(settings, options.transport);
  ngtcp2_transport_params params;
  ApplyParams(params, options.transport);
  params.original_dcid = hd.dcid;
  ngtcp2_callbacks callbacks;
  FillCallbacks(callbacks, Role::kServer);

  ngtcp2_path path = PathOf(self->local_, self->remote_);
  int rv = ngtcp2_conn_server_new(&self->conn_, &hd.scid, &scid, &path, hd.version, &callbacks,
                                  &settings, &params, nullptr, self.get());
  if (rv != 0) {
    throw QuicError(QuicErrc::kTransportError,
                    std::string("ngtcp2_conn_server_new: ") + ngtcp2_strerror(rv));
  }
  self->AttachTls(NewServerSession(*credentials, options), options.transport);
  return self;
}

void QuicConnection::AttachTls(gnutls_session_t session, const QuicTransportOptions& transport) {
  session_ = session;
  gnutls_session_set_ptr(session_, &conn_ref_);
  ngtcp2_conn_set_tls_native_handle(conn_, session_);
  if (transport.keepalive_interval.count() > 0) {
    ngtcp2_conn_set_keep_alive_timeout(conn_, ToDuration(transport.keepalive_interval));
  }
}

std::string QuicConnection::Describe() const {
  return std::string(role_ == Role::kClient ? "quic client " : "quic server ") +
         local_.address().to_string() + ":" + std::to_string(local_.port()) + "->" +
         remote_.address().to_string() + ":" + std::to_string(remote_.port());
}

std::size_t QuicConnection::MaxUdpPayload() const {
  if (conn_ == nullptr) return 0;
  return std::min(tx_.size(), ngtcp2_conn_get_path_max_tx_udp_payload_size(conn_));
}

std::chrono::nanoseconds QuicConnection::SmoothedRtt() const {
  if (conn_ == nullptr) return {};
  ngtcp2_conn_stat stat;
  ngtcp2_conn_get_conn_stat(conn_, &stat);
  return std::chrono::nanoseconds(stat.smoothed_rtt);
}

}  // namespace tunnelkit::cloudflare::quic
