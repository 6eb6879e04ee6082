#include "tunnelkit/cloudflare/wire/quic/quic_connection.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/socket.h>

#include <gnutls/crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>
#include <spdlog/spdlog.h>

#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "quic_tls.hpp"
#include "tunnelkit/cloudflare/wire/quic/quic_stream.hpp"

namespace tunnelkit::cloudflare::quic {

namespace asio = boost::asio;
using boost::system::error_code;
using udp = asio::ip::udp;

namespace {

constexpr std::size_t kClientCidLen = 18;
constexpr std::size_t kMaxPacketsPerFlush = 64;
constexpr std::size_t kMaxDatagramsPerRead = 64;
constexpr std::size_t kTxBufferSize = 1500;
// Generic segmentation offload: consecutive packets of one flush leave in one sendmsg of up to
// kMaxGsoSegments equal-sized datagrams (the last may be shorter), cutting the syscalls per
// packet on the bulk path. Falls back to one send per packet where the kernel refuses it.
constexpr std::size_t kMaxGsoSegments = 44;  // 44 * 1452 < 65507, the largest UDP payload
// The largest UDP payload over IPv4 (65535 - 20 - 8) and our send buffer: one packet.
constexpr std::size_t kMaxUdpPayload = 65507;
// A Write() returns while at most this much of its stream is not yet in packets: the writer
// fetches its next buffer while the connection sends this one.
constexpr std::uint64_t kWriteBehind = 128 * 1024;

ngtcp2_tstamp Now() {
  return static_cast<ngtcp2_tstamp>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::steady_clock::now().time_since_epoch())
                                        .count());
}

ngtcp2_duration ToDuration(std::chrono::milliseconds ms) {
  return static_cast<ngtcp2_duration>(ms.count()) * NGTCP2_MILLISECONDS;
}

void Random(std::uint8_t* dest, std::size_t len) {
  // GnuTLS's CSPRNG; it cannot fail once the library is initialised.
  (void)gnutls_rnd(GNUTLS_RND_RANDOM, dest, len);
}

// Waits until the timer is cancelled (a notification). Timers used this way always expire
// at max, so several waiters on one timer never disturb each other.
asio::awaitable<void> WaitSignal(asio::steady_timer& signal) {
  error_code ec;
  co_await signal.async_wait(asio::redirect_error(asio::use_awaitable, ec));
}

void Notify(asio::steady_timer& signal) {
  signal.cancel();
}

void InitSignal(asio::steady_timer& signal) {
  signal.expires_at(asio::steady_timer::time_point::max());
}

std::string Hex(std::uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string OneLine(std::string s) {
  for (char& c : s) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

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

// ---------------------------------------------------------------------------------------------
// ngtcp2 callbacks: they only update state; see the design note in the header.

struct QuicCallbacks {
  static QuicConnection* Self(void* user_data) { return static_cast<QuicConnection*>(user_data); }
  static detail::StreamState* Stream(void* stream_user_data) {
    return static_cast<detail::StreamState*>(stream_user_data);
  }

  static ngtcp2_conn* GetConn(ngtcp2_crypto_conn_ref* ref) {
    return static_cast<QuicConnection*>(ref->user_data)->conn_;
  }

  static void Rand(std::uint8_t* dest, std::size_t len, const ngtcp2_rand_ctx*) {
    Random(dest, len);
  }

  static int GetNewConnectionId(ngtcp2_conn*, ngtcp2_cid* cid, std::uint8_t* token,
                                std::size_t cidlen, void* user_data) {
    Random(cid->data, cidlen);
    cid->datalen = cidlen;
    Random(token, NGTCP2_STATELESS_RESET_TOKENLEN);
    auto* self = Self(user_data);
    if (self->on_new_cid_) self->on_new_cid_(*cid);
    return 0;
  }

  static int RemoveConnectionId(ngtcp2_conn*, const ngtcp2_cid* cid, void* user_data) {
    auto* self = Self(user_data);
    if (self->on_retire_cid_) self->on_retire_cid_(*cid);
    return 0;
  }

  static int HandshakeCompleted(ngtcp2_conn*, void* user_data) {
    auto* self = Self(user_data);
    self->alpn_ = SelectedAlpn(self->session_);
    if (self->alpn_ != self->expected_alpn_) {
      self->alpn_error_ = "TLS handshake failed: peer selected ALPN '" + self->alpn_ +
                          "', expected '" + self->expected_alpn_ + "'";
      return NGTCP2_ERR_CALLBACK_FAILURE;
    }
    self->established_ = true;
    Notify(self->handshake_wait_);
    if (self->on_established_) {
      asio::post(self->executor_, [weak = self->weak_from_this()] {
        if (auto conn = weak.lock(); conn && !conn->closed_ && conn->on_established_) {
          conn->on_established_();
        }
      });
    }
    return 0;
  }

  static int RecvStreamData(ngtcp2_conn*, std::uint32_t flags, std::int64_t, std::uint64_t,
                            const std::uint8_t* data, std::size_t datalen, void* user_data,
                            void* stream_user_data) {
    if (stream_user_data == nullptr) return 0;
    Self(user_data)->OnStreamData(*Stream(stream_user_data), flags, data, datalen);
    return 0;
  }

  static int AckedStreamDataOffset(ngtcp2_conn*, std::int64_t, std::uint64_t offset,
                                   std::uint64_t datalen, void* user_data, void* stream_user_data) {
    if (stream_user_data == nullptr) return 0;
    Self(user_data)->OnStreamAcked(*Stream(stream_user_data), offset, datalen);
    return 0;
  }

  static int StreamOpen(ngtcp2_conn*, std::int64_t stream_id, void* user_data) {
    Self(user_data)->OnPeerStream(stream_id);
    return 0;
  }

  static int StreamClose(ngtcp2_conn*, std::uint32_t flags, std::int64_t, std::uint64_t code,
                         void* user_data, void* stream_user_data) {
    if (stream_user_data == nullptr) return 0;
    Self(user_data)->OnStreamClose(*Stream(stream_user_data),
                                   (flags & NGTCP2_STREAM_CLOSE_FLAG_APP_ERROR_CODE_SET) != 0,
                                   code);
    return 0;
  }

  static int StreamReset(ngtcp2_conn*, std::int64_t, std::uint64_t, std::uint64_t code,
                         void* user_data, void* stream_user_data) {
    if (stream_user_data == nullptr) return 0;
    Self(user_data)->OnStreamReset(*Stream(stream_user_data), code);
    return 0;
  }

  static int ExtendMaxLocalStreamsBidi(ngtcp2_conn*, std::uint64_t, void* user_data) {
    Notify(Self(user_data)->open_wait_);
    return 0;
  }

  static int ExtendMaxStreamData(ngtcp2_conn*, std::int64_t, std::uint64_t, void* user_data,
                                 void* stream_user_data) {
    if (stream_user_data == nullptr) return 0;
    auto* st = Stream(stream_user_data);
    st->flow_blocked = false;
    Self(user_data)->QueueSend(*st);
    return 0;
  }

  static int RecvDatagram(ngtcp2_conn*, std::uint32_t, const std::uint8_t*, std::size_t, void*) {
    return 0;  // DATAGRAM frames are not used by this layer (advertised for compatibility).
  }

  static void Fill(ngtcp2_callbacks& cb, QuicConnection::Role role) {
    std::memset(&cb, 0, sizeof cb);
    if (role == QuicConnection::Role::kClient) {
      cb.client_initial = ngtcp2_crypto_client_initial_cb;
      cb.recv_retry = ngtcp2_crypto_recv_retry_cb;
    } else {
      cb.recv_client_initial = ngtcp2_crypto_recv_client_initial_cb;
    }
    cb.recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb;
    cb.encrypt = ngtcp2_crypto_encrypt_cb;
    cb.decrypt = ngtcp2_crypto_decrypt_cb;
    cb.hp_mask = ngtcp2_crypto_hp_mask_cb;
    cb.update_key = ngtcp2_crypto_update_key_cb;
    cb.delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb;
    cb.delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb;
    cb.get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb;
    cb.version_negotiation = ngtcp2_crypto_version_negotiation_cb;
    cb.rand = Rand;
    cb.get_new_connection_id = GetNewConnectionId;
    cb.remove_connection_id = RemoveConnectionId;
    cb.handshake_completed = HandshakeCompleted;
    cb.recv_stream_data = RecvStreamData;
    cb.acked_stream_data_offset = AckedStreamDataOffset;
    cb.stream_open = StreamOpen;
    cb.stream_close = StreamClose;
    cb.stream_reset = StreamReset;
    cb.extend_max_local_streams_bidi = ExtendMaxLocalStreamsBidi;
    cb.extend_max_stream_data = ExtendMaxStreamData;
    cb.recv_datagram = RecvDatagram;
  }
};

// ---------------------------------------------------------------------------------------------

namespace {
// Live objects, for tests that check nothing is leaked (connect/close churn).
std::atomic<std::size_t> live_connections{0};
std::atomic<std::size_t> live_streams{0};
}  // namespace

detail::StreamState::StreamState(const asio::any_io_executor& ex, std::int64_t stream_id)
    : id(stream_id), read_wait(ex), write_wait(ex) {
  InitSignal(read_wait);
  InitSignal(write_wait);
  live_streams.fetch_add(1, std::memory_order_relaxed);
}

detail::StreamState::~StreamState() {
  live_streams.fetch_sub(1, std::memory_order_relaxed);
}

std::size_t detail::StreamState::live() {
  return live_streams.load(std::memory_order_relaxed);
}

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
  conn_ref_.get_conn = QuicCallbacks::GetConn;
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
  QuicCallbacks::Fill(callbacks, Role::kClient);

  ngtcp2_path path{{reinterpret_cast<ngtcp2_sockaddr*>(self->local_.data()),
                    static_cast<ngtcp2_socklen>(self->local_.size())},
                   {reinterpret_cast<ngtcp2_sockaddr*>(self->remote_.data()),
                    static_cast<ngtcp2_socklen>(self->remote_.size())},
                   nullptr};
  int rv = ngtcp2_conn_client_new(&self->conn_, &dcid, &scid, &path, NGTCP2_PROTO_VER_V1,
                                  &callbacks, &settings, &params, nullptr, self.get());
  if (rv != 0) {
    throw QuicError(QuicErrc::kTransportError,
                    std::string("ngtcp2_conn_client_new: ") + ngtcp2_strerror(rv));
  }
  self->session_ = NewClientSession(*credentials, options);
  gnutls_session_set_ptr(self->session_, &self->conn_ref_);
  ngtcp2_conn_set_tls_native_handle(self->conn_, self->session_);
  if (options.transport.keepalive_interval.count() > 0) {
    ngtcp2_conn_set_keep_alive_timeout(self->conn_,
                                       ToDuration(options.transport.keepalive_interval));
  }
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
  QuicCallbacks::Fill(callbacks, Role::kServer);

  ngtcp2_path path{{reinterpret_cast<ngtcp2_sockaddr*>(self->local_.data()),
                    static_cast<ngtcp2_socklen>(self->local_.size())},
                   {reinterpret_cast<ngtcp2_sockaddr*>(self->remote_.data()),
                    static_cast<ngtcp2_socklen>(self->remote_.size())},
                   nullptr};
  int rv = ngtcp2_conn_server_new(&self->conn_, &hd.scid, &scid, &path, hd.version, &callbacks,
                                  &settings, &params, nullptr, self.get());
  if (rv != 0) {
    throw QuicError(QuicErrc::kTransportError,
                    std::string("ngtcp2_conn_server_new: ") + ngtcp2_strerror(rv));
  }
  self->session_ = NewServerSession(*credentials, options);
  gnutls_session_set_ptr(self->session_, &self->conn_ref_);
  ngtcp2_conn_set_tls_native_handle(self->conn_, self->session_);
  if (options.transport.keepalive_interval.count() > 0) {
    ngtcp2_conn_set_keep_alive_timeout(self->conn_,
                                       ToDuration(options.transport.keepalive_interval));
  }
  return self;
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

// ---------------------------------------------------------------------------------------------
// Driver

namespace detail {

void UdpLink::EnableGro() {
#ifdef UDP_GRO
  int on = 1;
  ::setsockopt(socket.native_handle(), SOL_UDP, UDP_GRO, &on, sizeof(on));
#endif
}

void UdpLink::SetBuffers(int bytes) {
  if (bytes <= 0) return;
  ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes));
  ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes));
}

std::size_t UdpLink::PathMtu() {
  int mtu = 0;
  socklen_t len = sizeof(mtu);
  const bool v6 = socket.local_endpoint().address().is_v6();
  if (::getsockopt(socket.native_handle(), v6 ? IPPROTO_IPV6 : IPPROTO_IP, v6 ? IPV6_MTU : IP_MTU,
                   &mtu, &len) != 0 ||
      mtu <= 0) {
    return 0;
  }
  return static_cast<std::size_t>(mtu);
}

bool UdpLink::ReceiveOnce(std::size_t& len, std::size_t& segment) {
  iovec iov{rx.data(), rx.size()};
  msghdr msg{};
  msg.msg_name = rx_from.data();
  msg.msg_namelen = static_cast<socklen_t>(rx_from.capacity());
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = ::recvmsg(socket.native_handle(), &msg, MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return false;
  rx_from.resize(msg.msg_namelen);
  len = static_cast<std::size_t>(n);
  segment = len;
#ifdef UDP_GRO
  for (cmsghdr* cm = CMSG_FIRSTHDR(&msg); cm != nullptr; cm = CMSG_NXTHDR(&msg, cm)) {
    if (cm->cmsg_level == SOL_UDP && cm->cmsg_type == UDP_GRO) {
      int size = 0;
      std::memcpy(&size, CMSG_DATA(cm), sizeof(size));
      if (size > 0) segment = static_cast<std::size_t>(size);
    }
  }
#endif
  return true;
}

}  // namespace detail

void QuicConnection::StartReceive() {
  auto link = link_;
  link->socket.async_wait(
      udp::socket::wait_read, [weak = weak_from_this(), link](const error_code& ec) {
        auto self = weak.lock();
        if (!self || self->closed_ || ec == asio::error::operation_aborted) return;
        // Drain what is queued (GRO may hand over many datagrams per read), then flush once.
        // Errors (an ICMP port unreachable reported on the connected socket) are transient for
        // QUIC: keep reading; the idle timeout ends a dead path.
        std::size_t len = 0;
        std::size_t segment = 0;
        for (std::size_t i = 0; i < kMaxDatagramsPerRead && !self->closed_; ++i) {
          if (!link->ReceiveOnce(len, segment)) break;
          for (std::size_t off = 0; off < len && !self->closed_; off += segment) {
            self->OnDatagram(link->rx.data() + off, std::min(segment, len - off), link->rx_from);
          }
        }
        if (!self->closed_) self->Flush();
        if (!self->closed_) self->StartReceive();
      });
}

void QuicConnection::OnDatagram(const std::uint8_t* data, std::size_t len,
                                const udp::endpoint& from) {
  if (closed_) return;
  udp::endpoint remote = from;
  ngtcp2_path path{{reinterpret_cast<ngtcp2_sockaddr*>(local_.data()),
                    static_cast<ngtcp2_socklen>(local_.size())},
                   {reinterpret_cast<ngtcp2_sockaddr*>(remote.data()),
                    static_cast<ngtcp2_socklen>(remote.size())},
                   nullptr};
  ngtcp2_pkt_info pi{};
  int rv = ngtcp2_conn_read_pkt(conn_, &path, &pi, data, len, Now());
  if (rv != 0) {
    HandleLibError(rv, true);
    return;
  }
  received_since_flush_ = true;
}

void QuicConnection::ScheduleFlush() {
  if (flush_scheduled_ || closed_) return;
  flush_scheduled_ = true;
  asio::post(executor_, [weak = weak_from_this()] {
    if (auto self = weak.lock()) {
      self->flush_scheduled_ = false;
      self->Flush();
    }
  });
}

void QuicConnection::Flush() {
  if (closed_ || conn_ == nullptr) return;
  const ngtcp2_tstamp ts = Now();
  ngtcp2_path_storage ps;
  ngtcp2_path_storage_zero(&ps);
  ngtcp2_pkt_info pi{};
  std::size_t max_payload = MaxUdpPayload();
  // Until the handshake is done the peer's max_udp_payload_size is unknown: handshake packets
  // (a client's Initial is padded to the buffer's size) stay within the configured size.
  if (!established_) max_payload = std::min(max_payload, transport_.max_udp_payload);
  std::size_t max_packets = ngtcp2_conn_get_send_quantum(conn_) / max_payload;
  max_packets = std::clamp<std::size_t>(max_packets, 1, kMaxPacketsPerFlush);

  if (received_since_flush_) {
    // ngtcp2 0.12 has no callback for a peer's STOP_SENDING: it just resets our send side.
    // Retrying flow-blocked streams after new packets lets writev_stream report that
    // (STREAM_SHUT_WR) instead of leaving their writers waiting for credit that never comes.
    received_since_flush_ = false;
    for (std::int64_t id : blocked_) {
      if (auto it = streams_.find(id); it != streams_.end() && it->second->flow_blocked) {
        it->second->flow_blocked = false;
        QueueSend(*it->second);
      }
    }
    blocked_.clear();
  }
  std::size_t packets = 0;
  bool stream_data = false;  // this flush carried new stream data
  std::array<ngtcp2_vec, 16> vec;
  // The batch of packets waiting to be sent: tx_[0, batch_bytes), `batch_count` segments of
  // `segment` bytes (the last may be shorter).
  std::size_t batch_bytes = 0;
  std::size_t batch_count = 0;
  std::size_t segment = 0;
  ngtcp2_path_storage batch_path;
  ngtcp2_path_storage_zero(&batch_path);
  auto send_batch = [&] {
    if (batch_count > 0) SendBatch(tx_.data(), batch_bytes, segment, batch_count, batch_path.path);
    batch_bytes = 0;
    batch_count = 0;
  };
  while (packets < max_packets) {
    if (tx_.size() - batch_bytes < max_payload || batch_count == kMaxGsoSegments) send_batch();
    std::uint8_t* out = tx_.data() + batch_bytes;
    // The stream at the front of the queue, skipping ones with nothing left to send.
    detail::StreamState* st = nullptr;
    while (!send_queue_.empty()) {
      auto it = streams_.find(send_queue_.front());
      if (it != streams_.end() && it->second->HasPendingSend() && !it->second->flow_blocked &&
          !it->second->write_error) {
        st = it->second.get();
        break;
      }
      if (it != streams_.end()) it->second->in_send_queue = false;
      send_queue_.pop_front();
    }

    std::int64_t stream_id = -1;
    std::size_t vcnt = 0;
    std::uint32_t flags = NGTCP2_WRITE_STREAM_FLAG_MORE;
    if (st != nullptr) {
      stream_id = st->id;
      std::uint64_t covered = st->sent;
      for (std::size_t i = st->send_index; i < st->chunks.size() && vcnt < vec.size(); ++i) {
        auto& chunk = st->chunks[i];
        std::size_t skip = static_cast<std::size_t>(covered - chunk.offset);
        vec[vcnt].base = chunk.data.data() + skip;
        vec[vcnt].len = chunk.data.size() - skip;
        covered += vec[vcnt].len;
        ++vcnt;
      }
      if (st->fin_requested && covered == st->queued) flags |= NGTCP2_WRITE_STREAM_FLAG_FIN;
    }

    ngtcp2_ssize accepted = -1;
    ngtcp2_ssize n = ngtcp2_conn_writev_stream(conn_, &ps.path, &pi, out, max_payload, &accepted,
                                               flags, stream_id, vec.data(), vcnt, ts);
    if (n < 0) {
      if (n == NGTCP2_ERR_WRITE_MORE && st != nullptr) {
        // Room left in the packet: account for the data and fill it with the next stream.
        st->sent += static_cast<std::uint64_t>(accepted);
        stream_data = stream_data || accepted > 0;
        while (st->send_index < st->chunks.size() &&
               st->chunks[st->send_index].offset + st->chunks[st->send_index].data.size() <=
                   st->sent) {
          ++st->send_index;
        }
        if ((flags & NGTCP2_WRITE_STREAM_FLAG_FIN) && st->sent == st->queued) st->fin_sent = true;
        Notify(st->write_wait);
        if (!st->HasPendingSend()) {
          st->in_send_queue = false;
          send_queue_.pop_front();
        }
        continue;
      }
      if ((n == NGTCP2_ERR_STREAM_DATA_BLOCKED || n == NGTCP2_ERR_STREAM_SHUT_WR) &&
          st != nullptr) {
        if (n == NGTCP2_ERR_STREAM_DATA_BLOCKED) {
          st->flow_blocked = true;
          blocked_.push_back(st->id);
        } else if (!st->write_error) {
          // We only shut the send side down after setting write_error, so ngtcp2 did it in
          // answer to the peer's STOP_SENDING.
          st->write_error = QuicErrc::kStopSending;
          Notify(st->write_wait);
        }
        st->in_send_queue = false;
        send_queue_.pop_front();
        continue;
      }
      send_batch();
      HandleLibError(static_cast<int>(n), false);
      return;
    }
    if (st != nullptr && accepted >= 0) {
      st->sent += static_cast<std::uint64_t>(accepted);
      stream_data = stream_data || accepted > 0;
      while (st->send_index < st->chunks.size() &&
             st->chunks[st->send_index].offset + st->chunks[st->send_index].data.size() <=
                 st->sent) {
        ++st->send_index;
      }
      if ((flags & NGTCP2_WRITE_STREAM_FLAG_FIN) && st->sent == st->queued) st->fin_sent = true;
      Notify(st->write_wait);
      send_queue_.pop_front();
      if (st->HasPendingSend()) {
        send_queue_.push_back(st->id);  // round robin between streams
      } else {
        st->in_send_queue = false;
      }
    }
    if (n == 0) break;  // congestion or flow control limited, or nothing to send
    const auto size = static_cast<std::size_t>(n);
    const bool same_path =
        batch_count > 0 && ps.path.remote.addrlen == batch_path.path.remote.addrlen &&
        std::memcmp(ps.path.remote.addr, batch_path.path.remote.addr, ps.path.remote.addrlen) == 0;
    if (batch_count > 0 && (!same_path || size > segment)) {
      // Cannot join the batch: send the batch, then start a new one with this packet.
      SendBatch(tx_.data(), batch_bytes, segment, batch_count, batch_path.path);
      std::memmove(tx_.data(), out, size);
      batch_bytes = 0;
      batch_count = 0;
    }
    if (batch_count == 0) {
      segment = size;
      ngtcp2_path_copy(&batch_path.path, &ps.path);
    }
    batch_bytes += size;
    ++batch_count;
    ++packets;
    // A shorter packet ends a GSO batch.
    if (size < segment) send_batch();
  }
  send_batch();
  // Pacing spaces out bulk data. A flush of ACKs and window updates only is not paced: its
  // pacing deadline would make the timer fire (a timerfd_settime, a wake-up, another flush)
  // after every ACK a receiver sends, with nothing to send then.
  if (stream_data) ngtcp2_conn_update_pkt_tx_time(conn_, ts);
  if (packets == max_packets) ScheduleFlush();  // more may be ready; let reads interleave
  ArmTimer();
}

void QuicConnection::SendBatch(const std::uint8_t* data, std::size_t len, std::size_t segment,
                               std::size_t count, const ngtcp2_path& path) {
  if (count > 1 && link_->gso) {
    iovec iov{const_cast<std::uint8_t*>(data), len};
    msghdr msg{};
    if (!link_->connected) {
      msg.msg_name = const_cast<sockaddr*>(path.remote.addr);
      msg.msg_namelen = static_cast<socklen_t>(path.remote.addrlen);
    }
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(std::uint16_t))] = {};
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    cmsghdr* cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_UDP;
    cm->cmsg_type = UDP_SEGMENT;
    cm->cmsg_len = CMSG_LEN(sizeof(std::uint16_t));
    const auto segment_size = static_cast<std::uint16_t>(segment);
    std::memcpy(CMSG_DATA(cm), &segment_size, sizeof(segment_size));
    ssize_t sent;
    do {
      sent = ::sendmsg(link_->socket.native_handle(), &msg, MSG_DONTWAIT);
    } while (sent < 0 && errno == EINTR);
    if (sent >= 0) return;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) return;  // loss
    if (errno != EIO && errno != EINVAL && errno != EOPNOTSUPP) return;
    // The kernel or the device cannot segment: one send per packet from now on.
    link_->gso = false;
  }
  for (std::size_t offset = 0; offset < len; offset += segment) {
    SendPacket(data + offset, std::min(segment, len - offset), path);
  }
}

void QuicConnection::SendPacket(const std::uint8_t* data, std::size_t len,
                                const ngtcp2_path& path) {
  error_code ec;
  if (link_->connected) {
    link_->socket.send(asio::buffer(data, len), 0, ec);
  } else {
    udp::endpoint to;
    if (path.remote.addrlen > to.capacity()) return;
    std::memcpy(to.data(), path.remote.addr, path.remote.addrlen);
    to.resize(path.remote.addrlen);
    link_->socket.send_to(asio::buffer(data, len), to, 0, ec);
  }
  // A full socket buffer or a transient error is packet loss; QUIC retransmits.
}

void QuicConnection::ArmTimer() {
  if (closed_) return;
  const ngtcp2_tstamp expiry = ngtcp2_conn_get_expiry(conn_);
  // A pending wait that ends no later than the new expiry stays: it wakes early at worst, and
  // OnTimer re-arms. Every flush moves the loss timer forward, and re-arming (cancel, a new
  // wait, a timerfd_settime) for each would cost more than an occasional early wake-up.
  if (armed_expiry_ != 0 && armed_expiry_ <= expiry) return;
  if (expiry == UINT64_MAX) return;
  armed_expiry_ = expiry;
  timer_.expires_at(asio::steady_timer::time_point(
      std::chrono::duration_cast<asio::steady_timer::duration>(std::chrono::nanoseconds(expiry))));
  timer_.async_wait([weak = weak_from_this()](const error_code& ec) {
    if (ec == asio::error::operation_aborted) return;
    if (auto self = weak.lock()) self->OnTimer();
  });
}

void QuicConnection::OnTimer() {
  armed_expiry_ = 0;
  if (closed_) return;
  int rv = ngtcp2_conn_handle_expiry(conn_, Now());
  if (rv != 0) {
    HandleLibError(rv, false);
    return;
  }
  Flush();
}

asio::awaitable<void> QuicConnection::WaitHandshake() {
  auto self = shared_from_this();
  while (!established_ && !closed_) co_await WaitSignal(handshake_wait_);
  if (closed_) throw QuicError(close_info_.ec, close_info_.message);
}

// ---------------------------------------------------------------------------------------------
// Errors and closing

void QuicConnection::SendConnectionClose(const ngtcp2_connection_close_error& ccerr) {
  if (conn_ == nullptr || ngtcp2_conn_is_in_closing_period(conn_) ||
      ngtcp2_conn_is_in_draining_period(conn_)) {
    return;
  }
  ngtcp2_path_storage ps;
  ngtcp2_path_storage_zero(&ps);
  ngtcp2_pkt_info pi{};
  // A client's Initial is padded to the buffer's size: keep it to the configured size.
  const std::size_t size = std::min(tx_.size(), transport_.max_udp_payload);
  ngtcp2_ssize n =
      ngtcp2_conn_write_connection_close(conn_, &ps.path, &pi, tx_.data(), size, &ccerr, Now());
  if (n > 0) SendPacket(tx_.data(), static_cast<std::size_t>(n), ps.path);
}

void QuicConnection::HandleLibError(int rv, bool from_read) {
  if (closed_) return;
  QuicCloseInfo info;
  ngtcp2_connection_close_error ccerr;
  ngtcp2_connection_close_error_default(&ccerr);

  if (rv == NGTCP2_ERR_DRAINING || rv == NGTCP2_ERR_CLOSING) {
    // The peer closed the connection.
    ngtcp2_connection_close_error peer;
    ngtcp2_conn_get_connection_close_error(conn_, &peer);
    info.code = peer.error_code;
    info.reason.assign(reinterpret_cast<const char*>(peer.reason), peer.reasonlen);
    info.application = peer.type == NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_APPLICATION;
    if (!info.application && peer.error_code >= NGTCP2_CRYPTO_ERROR &&
        peer.error_code <= NGTCP2_CRYPTO_ERROR + 0xff) {
      auto alert = static_cast<std::uint8_t>(peer.error_code - NGTCP2_CRYPTO_ERROR);
      info.ec = QuicErrc::kHandshakeFailed;
      info.message = "TLS handshake failed: peer sent alert " + TlsAlertName(alert) + " (" +
                     Hex(peer.error_code) + ")";
    } else {
      info.ec = QuicErrc::kPeerClosed;
      info.message = std::string("connection closed by peer: ") +
                     (info.application ? "application error " : "transport error ") +
                     Hex(info.code) + (info.reason.empty() ? "" : " \"" + info.reason + "\"");
    }
    Terminate(std::move(info));
    return;
  }
  if (rv == NGTCP2_ERR_IDLE_CLOSE) {
    info.ec = QuicErrc::kIdleTimeout;
    info.message = "idle timeout: nothing heard from the peer for " +
                   std::to_string(transport_.idle_timeout.count()) + " ms";
    Terminate(std::move(info));
    return;
  }
  if (rv == NGTCP2_ERR_HANDSHAKE_TIMEOUT) {
    info.ec = QuicErrc::kHandshakeTimeout;
    info.message = "QUIC handshake timed out after " +
                   std::to_string(transport_.handshake_timeout.count()) + " ms";
    Terminate(std::move(info));
    return;
  }
  if (rv == NGTCP2_ERR_DROP_CONN) {
    info.ec = QuicErrc::kTransportError;
    info.message = "connection dropped";
    Terminate(std::move(info));
    return;
  }
  if (rv == NGTCP2_ERR_CRYPTO || (rv == NGTCP2_ERR_CALLBACK_FAILURE && !alpn_error_.empty())) {
    std::uint8_t alert = ngtcp2_conn_get_tls_alert(conn_);
    std::string verify = role_ == Role::kClient ? VerificationFailure(session_) : std::string();
    if (!alpn_error_.empty()) {
      alert = GNUTLS_A_NO_APPLICATION_PROTOCOL;
      info.ec = QuicErrc::kHandshakeFailed;
      info.message = alpn_error_;
    } else if (!verify.empty()) {
      info.ec = QuicErrc::kTlsVerificationFailed;
      info.message = "TLS verification failed: " + OneLine(verify);
    } else {
      info.ec = QuicErrc::kHandshakeFailed;
      info.message = "TLS handshake failed: " +
                     (alert != 0 ? "sent alert " + TlsAlertName(alert) : std::string("error"));
    }
    if (alert == 0) alert = GNUTLS_A_HANDSHAKE_FAILURE;
    // The TLS alert as a CRYPTO_ERROR lets the peer report the real cause.
    ngtcp2_connection_close_error_set_transport_error_tls_alert(&ccerr, alert, nullptr, 0);
    info.code = NGTCP2_CRYPTO_ERROR + alert;
    SendConnectionClose(ccerr);
    Terminate(std::move(info));
    return;
  }
  ngtcp2_connection_close_error_set_transport_error_liberr(&ccerr, rv, nullptr, 0);
  info.ec = QuicErrc::kTransportError;
  info.code = ccerr.error_code;
  info.message =
      std::string("QUIC ") + (from_read ? "receive" : "send") + " error: " + ngtcp2_strerror(rv);
  SendConnectionClose(ccerr);
  Terminate(std::move(info));
}

void QuicConnection::Close(std::uint64_t app_error_code, std::string_view reason) {
  if (closed_) return;
  ngtcp2_connection_close_error ccerr;
  ngtcp2_connection_close_error_default(&ccerr);
  ngtcp2_connection_close_error_set_application_error(
      &ccerr, app_error_code, reinterpret_cast<const std::uint8_t*>(reason.data()), reason.size());
  SendConnectionClose(ccerr);
  QuicCloseInfo info;
  info.ec = QuicErrc::kConnectionClosed;
  info.application = true;
  info.code = app_error_code;
  info.reason = std::string(reason);
  info.message = "connection closed locally: application error " + Hex(app_error_code) +
                 (reason.empty() ? "" : " \"" + std::string(reason) + "\"");
  Terminate(std::move(info));
}

void QuicConnection::Terminate(QuicCloseInfo info) {
  if (closed_) return;
  auto keep_alive = shared_from_this();  // the hooks below may drop the server's reference
  closed_ = true;
  close_info_ = std::move(info);
  spdlog::debug("{}: {}", Describe(), close_info_.message);
  timer_.cancel();
  for (auto& [id, st] : streams_) {
    if (!st->read_error) st->read_error = close_info_.ec;
    if (!st->write_error) st->write_error = close_info_.ec;
    Notify(st->read_wait);
    Notify(st->write_wait);
  }
  for (auto& st : accept_queue_) {
    st->read_error = close_info_.ec;
    st->write_error = close_info_.ec;
  }
  accept_queue_.clear();
  send_queue_.clear();
  stream_handler_ = nullptr;
  Notify(handshake_wait_);
  Notify(accept_wait_);
  Notify(open_wait_);
  Notify(closed_wait_);
  if (role_ == Role::kClient) {
    error_code ec;
    link_->socket.close(ec);
  }
  if (on_terminated_) {
    auto hook = std::move(on_terminated_);
    on_terminated_ = nullptr;
    hook();
  }
  on_new_cid_ = nullptr;
  on_retire_cid_ = nullptr;
  on_established_ = nullptr;
}

asio::awaitable<QuicCloseInfo> QuicConnection::WaitClosed() {
  auto self = shared_from_this();
  while (!closed_) co_await WaitSignal(closed_wait_);
  co_return close_info_;
}

// ---------------------------------------------------------------------------------------------
// Streams

std::shared_ptr<detail::StreamState> QuicConnection::AddStream(std::int64_t id) {
  auto st = std::make_shared<detail::StreamState>(executor_, id);
  streams_[id] = st;
  ngtcp2_conn_set_stream_user_data(conn_, id, st.get());
  return st;
}

std::shared_ptr<QuicStream> QuicConnection::MakeHandle(std::shared_ptr<detail::StreamState> st) {
  return std::make_shared<QuicStream>(shared_from_this(), std::move(st));
}

asio::awaitable<std::shared_ptr<QuicStream>> QuicConnection::OpenStream() {
  auto self = shared_from_this();
  for (;;) {
    if (closed_) throw QuicError(close_info_.ec, close_info_.message);
    if (!established_) {
      co_await WaitSignal(handshake_wait_);
      continue;
    }
    std::int64_t id = -1;
    int rv = ngtcp2_conn_open_bidi_stream(conn_, &id, nullptr);
    if (rv == 0) co_return MakeHandle(AddStream(id));
    if (rv != NGTCP2_ERR_STREAM_ID_BLOCKED) {
      throw QuicError(QuicErrc::kTransportError,
                      std::string("cannot open a stream: ") + ngtcp2_strerror(rv));
    }
    co_await WaitSignal(open_wait_);
  }
}

asio::awaitable<std::shared_ptr<QuicStream>> QuicConnection::AcceptStream() {
  auto self = shared_from_this();
  for (;;) {
    if (!accept_queue_.empty()) {
      auto st = std::move(accept_queue_.front());
      accept_queue_.pop_front();
      co_return MakeHandle(std::move(st));
    }
    if (closed_) co_return nullptr;
    co_await WaitSignal(accept_wait_);
  }
}

void QuicConnection::SetStreamHandler(StreamHandler handler) {
  stream_handler_ = std::move(handler);
  while (stream_handler_ && !accept_queue_.empty()) {
    DeliverPeerStream(accept_queue_.front());
    accept_queue_.pop_front();
  }
}

void QuicConnection::OnPeerStream(std::int64_t id) {
  auto st = AddStream(id);
  if (!ngtcp2_is_bidi_stream(id)) {
    st->discard = true;  // unidirectional streams carry nothing we use
    return;
  }
  if (stream_handler_) {
    DeliverPeerStream(st);
  } else {
    accept_queue_.push_back(st);
    Notify(accept_wait_);
  }
}

void QuicConnection::DeliverPeerStream(const std::shared_ptr<detail::StreamState>& st) {
  asio::post(executor_, [weak = weak_from_this(), st] {
    auto self = weak.lock();
    if (!self || !self->stream_handler_) return;
    auto handler = self->stream_handler_;
    handler(self->MakeHandle(st));
  });
}

void QuicConnection::QueueSend(detail::StreamState& st) {
  if (closed_ || st.in_send_queue || st.flow_blocked || !st.HasPendingSend()) return;
  st.in_send_queue = true;
  send_queue_.push_back(st.id);
  ScheduleFlush();
}

void QuicConnection::OnStreamData(detail::StreamState& st, std::uint32_t flags,
                                  const std::uint8_t* data, std::size_t len) {
  if (st.discard || st.released || st.read_error) {
    // Nobody will read it: give the credit back at once.
    ngtcp2_conn_extend_max_stream_offset(conn_, st.id, len);
    ngtcp2_conn_extend_max_offset(conn_, len);
  } else {
    if (len > 0 && st.read_into != nullptr && st.Buffered() == 0 &&
        st.read_delivered < st.read_capacity) {
      // A reader is waiting and nothing is queued before this data: one copy instead of two.
      const std::size_t direct = std::min(len, st.read_capacity - st.read_delivered);
      std::memcpy(st.read_into + st.read_delivered, data, direct);
      st.read_delivered += direct;
      data += direct;
      len -= direct;
    }
    if (len > 0) {
      if (st.rx_head > 0 && st.rx_head >= st.rx.size() / 2) {
        st.rx.erase(st.rx.begin(), st.rx.begin() + static_cast<std::ptrdiff_t>(st.rx_head));
        st.rx_head = 0;
      }
      st.rx.insert(st.rx.end(), data, data + len);
    }
  }
  if (flags & NGTCP2_STREAM_DATA_FLAG_FIN) st.fin_received = true;
  Notify(st.read_wait);
}

void QuicConnection::OnStreamAcked(detail::StreamState& st, std::uint64_t offset,
                                   std::uint64_t len) {
  st.acked = std::max(st.acked, offset + len);
  while (!st.chunks.empty() && st.send_index > 0 &&
         st.chunks.front().offset + st.chunks.front().data.size() <= st.acked) {
    st.chunks.pop_front();
    --st.send_index;
  }
}

void QuicConnection::DropBuffered(detail::StreamState& st) {
  std::size_t n = st.Buffered() + st.read_delivered;
  st.rx.clear();
  st.rx_head = 0;
  st.read_delivered = 0;
  if (n > 0 && conn_ != nullptr && !closed_) {
    ngtcp2_conn_extend_max_offset(conn_, n);
    ScheduleFlush();
  }
}

void QuicConnection::OnStreamClose(detail::StreamState& st, bool app_error_set,
                                   std::uint64_t code) {
  (void)app_error_set;
  (void)code;
  st.closed = true;
  if (!st.fin_received && !st.read_error) st.read_error = QuicErrc::kStreamReset;
  // A send side that ends without our FIN was reset: locally (write_error already set) or by
  // ngtcp2 answering the peer's STOP_SENDING.
  if (!st.write_error && !st.fin_sent) st.write_error = QuicErrc::kStopSending;
  Notify(st.read_wait);
  Notify(st.write_wait);
  if (!ngtcp2_conn_is_local_stream(conn_, st.id)) {
    if (ngtcp2_is_bidi_stream(st.id)) {
      ngtcp2_conn_extend_max_streams_bidi(conn_, 1);
    } else {
      ngtcp2_conn_extend_max_streams_uni(conn_, 1);
    }
  }
  if (st.released) DropBuffered(st);
  // Keep the state alive for handles; ngtcp2 no longer references it after this callback.
  streams_.erase(st.id);
}

void QuicConnection::OnStreamReset(detail::StreamState& st, std::uint64_t code) {
  (void)code;
  if (!st.read_error) st.read_error = QuicErrc::kStreamReset;
  DropBuffered(st);
  Notify(st.read_wait);
}

asio::awaitable<std::pair<error_code, std::size_t>> QuicConnection::StreamRead(
    std::shared_ptr<detail::StreamState> st, asio::mutable_buffer buffer) {
  auto self = shared_from_this();
  for (;;) {
    st->read_into = nullptr;
    st->read_capacity = 0;
    if (st->read_error) co_return std::pair{st->read_error, std::size_t{0}};
    if (st->read_delivered > 0) {
      // Copied into `buffer` by OnStreamData while we waited.
      const std::size_t n = st->read_delivered;
      st->read_delivered = 0;
      if (!closed_) {
        ngtcp2_conn_extend_max_stream_offset(conn_, st->id, n);
        ngtcp2_conn_extend_max_offset(conn_, n);
        ScheduleFlush();
      }
      co_return std::pair{error_code{}, n};
    }
    if (st->Buffered() > 0) {
      if (buffer.size() == 0) co_return std::pair{error_code{}, std::size_t{0}};
      std::size_t n = std::min(buffer.size(), st->Buffered());
      std::memcpy(buffer.data(), st->rx.data() + st->rx_head, n);
      st->rx_head += n;
      if (st->rx_head == st->rx.size()) {
        st->rx.clear();
        st->rx_head = 0;
      }
      if (!closed_) {
        // Only consumed data re-opens the windows: this is the backpressure.
        ngtcp2_conn_extend_max_stream_offset(conn_, st->id, n);
        ngtcp2_conn_extend_max_offset(conn_, n);
        ScheduleFlush();
      }
      co_return std::pair{error_code{}, n};
    }
    if (st->fin_received) co_return std::pair{error_code(asio::error::eof), std::size_t{0}};
    if (closed_) co_return std::pair{close_info_.ec, std::size_t{0}};
    st->read_into = static_cast<std::uint8_t*>(buffer.data());
    st->read_capacity = buffer.size();
    co_await WaitSignal(st->read_wait);
  }
}

asio::awaitable<std::pair<error_code, std::size_t>> QuicConnection::StreamWrite(
    std::shared_ptr<detail::StreamState> st, asio::const_buffer buffer) {
  auto self = shared_from_this();
  if (st->write_error) co_return std::pair{st->write_error, std::size_t{0}};
  if (closed_) co_return std::pair{close_info_.ec, std::size_t{0}};
  if (st->fin_requested || st->closed) {
    co_return std::pair{error_code(QuicErrc::kStreamClosed), std::size_t{0}};
  }
  if (buffer.size() == 0) co_return std::pair{error_code{}, std::size_t{0}};
  detail::StreamState::Chunk chunk;
  const auto* p = static_cast<const std::uint8_t*>(buffer.data());
  chunk.data.assign(p, p + buffer.size());
  chunk.offset = st->queued;
  st->chunks.push_back(std::move(chunk));
  st->queued += buffer.size();
  const std::uint64_t target = st->queued;
  QueueSend(*st);
  for (;;) {
    if (st->sent + kWriteBehind >= target) co_return std::pair{error_code{}, buffer.size()};
    if (st->write_error) co_return std::pair{st->write_error, std::size_t{0}};
    co_await WaitSignal(st->write_wait);
  }
}

error_code QuicConnection::StreamShutdownWrite(detail::StreamState& st) {
  if (st.write_error) return st.write_error;
  if (closed_) return close_info_.ec;
  if (st.fin_requested) return {};
  st.fin_requested = true;
  QueueSend(st);
  return {};
}

void QuicConnection::StreamReset(detail::StreamState& st, std::uint64_t code) {
  if (!closed_ && !st.closed) {
    ngtcp2_conn_shutdown_stream(conn_, st.id, code);
    ScheduleFlush();
  }
  if (!st.read_error) st.read_error = QuicErrc::kStreamClosed;
  if (!st.write_error) st.write_error = QuicErrc::kStreamClosed;
  DropBuffered(st);
  Notify(st.read_wait);
  Notify(st.write_wait);
}

void QuicConnection::StreamRelease(detail::StreamState& st) {
  st.released = true;
  if (!closed_ && !st.closed) {
    if (!st.fin_requested && !st.write_error) {
      ngtcp2_conn_shutdown_stream_write(conn_, st.id, 0);
      st.write_error = QuicErrc::kStreamClosed;
    }
    if (!st.fin_received && !st.read_error) {
      ngtcp2_conn_shutdown_stream_read(conn_, st.id, 0);
      st.read_error = QuicErrc::kStreamClosed;
    }
    ScheduleFlush();
  }
  DropBuffered(st);
}

}  // namespace tunnelkit::cloudflare::quic
