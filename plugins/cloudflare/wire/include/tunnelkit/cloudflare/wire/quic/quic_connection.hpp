// QUIC connections for the cloudflare backend and for tools/cfedge (ngtcp2 0.12 + GnuTLS).
//
// Design. ngtcp2 is a state machine without I/O, so the layer is split in two:
// - QuicConnection owns one ngtcp2_conn and its GnuTLS session and does all protocol work
//   synchronously: OnDatagram() feeds read_pkt, Flush() runs the writev_stream loop (stream
//   data from every stream with something to send, round robin, then ACKs/PINGs) and sends each
//   packet at once with a non-blocking send_to (a full socket buffer is treated as loss, which
//   QUIC recovers from). One steady_timer is re-armed to ngtcp2_conn_get_expiry() after every
//   flush; it drives retransmission, keepalive PINGs, idle and handshake timeouts.
// - Whoever owns the UDP socket drives it: a client connection reads its own connected socket;
//   QuicServer reads one socket for all connections and routes datagrams by destination
//   connection ID. Both read a burst of datagrams, then flush each touched connection once, so
//   ACKs and stream data leave in as few packets as possible.
// Everything runs on one executor (one io_context thread): ngtcp2 callbacks only record state
// and wake waiters (steady_timers used as condition variables), they never call user code, so
// nothing re-enters ngtcp2. User callbacks are posted.
//
// Memory bounds. ngtcp2 does not copy stream data: each Write() copies its buffer into one
// chunk that stays in the stream's deque until ngtcp2 reports it acknowledged; Write() returns
// once at most kWriteBehind bytes of the stream are not yet in packets (so the writer can fetch
// its next buffer while this one is being sent), so unsent data is bounded by kWriteBehind plus
// one write per stream. Received data is buffered per stream and the flow-control windows move
// forward only as the application reads (ReadSome), so a slow reader holds back its own sender
// without stalling other streams, and buffering is bounded by the receive windows.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/error_code.hpp>

#include "tunnelkit/cloudflare/wire/quic/quic_error.hpp"
#include "tunnelkit/cloudflare/wire/quic/quic_options.hpp"
#include "tunnelkit/cloudflare/wire/quic/udp_link.hpp"

namespace tunnelkit::cloudflare::quic {

class QuicStream;
class QuicServer;
class QuicClient;
class TlsCredentials;

// Why and how a connection ended.
struct QuicCloseInfo {
  boost::system::error_code ec;  // a QuicErrc: kConnectionClosed, kPeerClosed, kIdleTimeout, ...
  bool application = false;      // `code` is an application error code (else a transport one)
  std::uint64_t code = 0;        // error code sent or received in CONNECTION_CLOSE
  std::string reason;            // reason phrase sent or received
  std::string message;           // one line for logs, e.g. "TLS verification failed: ..."
};

namespace detail {

// Length of the connection IDs a server issues (routing key of QuicServer).
inline constexpr std::size_t kServerCidLength = 16;

// Per-stream state, owned by the connection while ngtcp2 knows the stream and by the
// QuicStream handle while the application holds it.
class StreamState {
 public:
  StreamState(const boost::asio::any_io_executor& ex, std::int64_t id);
  ~StreamState();
  StreamState(const StreamState&) = delete;
  StreamState& operator=(const StreamState&) = delete;
  // Stream states alive in this process (for leak tests).
  static std::size_t live();

  struct Chunk {
    std::vector<std::uint8_t> data;
    std::uint64_t offset = 0;  // stream offset of data[0]
  };

  std::int64_t id;
  // Receive side: bytes delivered by ngtcp2, not yet read by the application.
  std::vector<std::uint8_t> rx;
  std::size_t rx_head = 0;
  // The buffer of a reader waiting in StreamRead while rx is empty: arriving data is copied
  // straight into it (read_delivered bytes so far) instead of through rx.
  std::uint8_t* read_into = nullptr;
  std::size_t read_capacity = 0;
  std::size_t read_delivered = 0;
  bool fin_received = false;
  boost::system::error_code read_error;
  // Send side: chunks from `acked` on; chunks before send_index are fully handed to ngtcp2.
  std::deque<Chunk> chunks;
  std::size_t send_index = 0;
  std::uint64_t queued = 0;  // end offset of all written data
  std::uint64_t sent = 0;    // offset handed to ngtcp2
  std::uint64_t acked = 0;   // offset acknowledged by the peer
  bool fin_requested = false;
  bool fin_sent = false;
  bool flow_blocked = false;  // STREAM_DATA_BLOCKED until MAX_STREAM_DATA
  bool in_send_queue = false;
  boost::system::error_code write_error;
  // Lifetime.
  bool closed = false;    // ngtcp2 closed the stream
  bool released = false;  // the application dropped its handle
  bool discard = false;   // peer-opened unidirectional stream: data is dropped
  boost::asio::steady_timer read_wait;
  boost::asio::steady_timer write_wait;

  std::size_t Buffered() const { return rx.size() - rx_head; }
  bool HasPendingSend() const { return sent < queued || (fin_requested && !fin_sent); }
};

}  // namespace detail

class QuicConnection : public std::enable_shared_from_this<QuicConnection> {
 public:
  enum class Role { kClient, kServer };
  using StreamHandler = std::function<void(std::shared_ptr<QuicStream>)>;

  ~QuicConnection();
  // Connections alive in this process, either role (for leak and churn tests).
  static std::size_t live();
  QuicConnection(const QuicConnection&) = delete;
  QuicConnection& operator=(const QuicConnection&) = delete;

  boost::asio::any_io_executor get_executor() const { return executor_; }
  Role role() const { return role_; }
  boost::asio::ip::udp::endpoint local_endpoint() const { return local_; }
  boost::asio::ip::udp::endpoint remote_endpoint() const { return remote_; }
  // The negotiated ALPN protocol (empty before the handshake).
  const std::string& alpn() const { return alpn_; }
  // Handshake done and not closed.
  bool is_open() const { return established_ && !closed_; }
  bool closed() const { return closed_; }
  const QuicCloseInfo& close_info() const { return close_info_; }
  // "quic client 127.0.0.1:5000->127.0.0.1:7844" style, for logs.
  std::string Describe() const;

  // Opens a bidirectional stream, waiting while the peer's stream limit is reached. Throws
  // QuicError once the connection is closed.
  boost::asio::awaitable<std::shared_ptr<QuicStream>> OpenStream();

  // The next bidirectional stream opened by the peer; nullptr once the connection is closed.
  boost::asio::awaitable<std::shared_ptr<QuicStream>> AcceptStream();

  // Alternative to AcceptStream: every stream the peer opens (including ones already queued)
  // is handed to `handler`, posted on the executor. Cleared when the connection closes.
  void SetStreamHandler(StreamHandler handler);

  // Closes with an application error code and reason (CONNECTION_CLOSE frame). Every stream
  // fails with QuicErrc::kConnectionClosed. Safe to call more than once.
  void Close(std::uint64_t app_error_code = 0, std::string_view reason = {});

  // Completes when the connection has closed, for any reason.
  boost::asio::awaitable<QuicCloseInfo> WaitClosed();

  // Round-trip estimate, for logs and benchmarks.
  std::chrono::nanoseconds SmoothedRtt() const;

  // The largest UDP payload this endpoint sends now (after the handshake: min of ours and the
  // peer's max_udp_payload_size, see QuicTransportOptions::loopback_mtu), for logs and tests.
  std::size_t MaxUdpPayload() const;

 private:
  friend class QuicStream;
  friend class QuicClient;
  friend class QuicServer;
  friend struct QuicCallbacks;

  QuicConnection(Role role, const boost::asio::any_io_executor& ex,
                 std::shared_ptr<detail::UdpLink> link, QuicTransportOptions transport);

  // Creation (used by QuicClient and QuicServer). Throw QuicError.
  static std::shared_ptr<QuicConnection> CreateClient(const boost::asio::any_io_executor& ex,
                                                      const boost::asio::ip::udp::endpoint& remote,
                                                      const QuicClientOptions& options);
  // `hd` is the header of the client's first Initial (from ngtcp2_accept).
  static std::shared_ptr<QuicConnection> CreateServer(const boost::asio::any_io_executor& ex,
                                                      std::shared_ptr<detail::UdpLink> link,
                                                      const boost::asio::ip::udp::endpoint& local,
                                                      const boost::asio::ip::udp::endpoint& remote,
                                                      const ngtcp2_pkt_hd& hd,
                                                      const QuicServerOptions& options,
                                                      std::shared_ptr<TlsCredentials> credentials);

  // Creation's last step: the TLS session of the handshake, and keepalive PINGs.
  void AttachTls(gnutls_session_t session, const QuicTransportOptions& transport);

  // Driver entry points.
  void OnDatagram(const std::uint8_t* data, std::size_t len,
                  const boost::asio::ip::udp::endpoint& from);
  void Flush();
  // Flush's parts: streams that were flow blocked get another try after new packets; the
  // stream whose data goes next; what ngtcp2 took of a stream, or why it took nothing.
  void RetryBlockedStreams();
  detail::StreamState* NextSendStream();
  bool OnStreamWriteStopped(detail::StreamState& st, ngtcp2_ssize result, ngtcp2_ssize accepted,
                            std::uint32_t flags, bool& stream_data);
  void ScheduleFlush();
  void ArmTimer();
  void OnTimer();
  void StartReceive();  // clients only: read the connection's own socket
  boost::asio::awaitable<void> WaitHandshake();

  // Error handling.
  void HandleLibError(int rv, bool from_read);
  void SendConnectionClose(const ngtcp2_connection_close_error& ccerr);
  void Terminate(QuicCloseInfo info);
  // The peer's CONNECTION_CLOSE, as QuicCloseInfo.
  QuicCloseInfo PeerCloseInfo() const;
  // A failed handshake: the cause (ALPN, certificate verification, TLS alert) in `info` and the
  // TLS alert to send back.
  std::uint8_t TlsFailureInfo(QuicCloseInfo& info) const;

  // Streams.
  std::shared_ptr<detail::StreamState> AddStream(std::int64_t id);
  void QueueSend(detail::StreamState& st);
  void OnStreamData(detail::StreamState& st, std::uint32_t flags, const std::uint8_t* data,
                    std::size_t len);
  void OnStreamAcked(detail::StreamState& st, std::uint64_t offset, std::uint64_t len);
  void OnStreamClose(detail::StreamState& st, bool app_error_set, std::uint64_t code);
  void OnStreamReset(detail::StreamState& st, std::uint64_t code);
  void OnPeerStream(std::int64_t id);
  void DeliverPeerStream(const std::shared_ptr<detail::StreamState>& st);
  void DropBuffered(detail::StreamState& st);
  std::shared_ptr<QuicStream> MakeHandle(std::shared_ptr<detail::StreamState> st);

  boost::asio::awaitable<std::pair<boost::system::error_code, std::size_t>> StreamRead(
      std::shared_ptr<detail::StreamState> st, boost::asio::mutable_buffer buffer);
  boost::asio::awaitable<std::pair<boost::system::error_code, std::size_t>> StreamWrite(
      std::shared_ptr<detail::StreamState> st, boost::asio::const_buffer buffer);
  boost::system::error_code StreamShutdownWrite(detail::StreamState& st);
  void StreamReset(detail::StreamState& st, std::uint64_t code);
  void StreamRelease(detail::StreamState& st);

  Role role_;
  boost::asio::any_io_executor executor_;
  std::shared_ptr<detail::UdpLink> link_;
  QuicTransportOptions transport_;
  std::shared_ptr<TlsCredentials> credentials_;
  boost::asio::ip::udp::endpoint local_;
  boost::asio::ip::udp::endpoint remote_;
  ngtcp2_conn* conn_ = nullptr;
  gnutls_session_t session_ = nullptr;
  ngtcp2_crypto_conn_ref conn_ref_{};
  std::string expected_alpn_;
  std::string alpn_;
  std::string alpn_error_;
  bool verify_peer_ = true;

  bool established_ = false;
  bool closed_ = false;
  QuicCloseInfo close_info_;

  std::unordered_map<std::int64_t, std::shared_ptr<detail::StreamState>> streams_;
  std::deque<std::int64_t> send_queue_;
  std::vector<std::int64_t> blocked_;  // streams that hit STREAM_DATA_BLOCKED
  bool received_since_flush_ = false;
  std::deque<std::shared_ptr<detail::StreamState>> accept_queue_;
  StreamHandler stream_handler_;

  boost::asio::steady_timer timer_;
  std::uint64_t armed_expiry_ = 0;  // deadline of the pending timer wait; 0: none pending
  bool flush_scheduled_ = false;
  boost::asio::steady_timer handshake_wait_;
  boost::asio::steady_timer accept_wait_;
  boost::asio::steady_timer open_wait_;
  boost::asio::steady_timer closed_wait_;
  std::vector<std::uint8_t> tx_;

  // Set by QuicServer: connection IDs to route to this connection, and removal on close.
  std::function<void(const ngtcp2_cid&)> on_new_cid_;
  std::function<void(const ngtcp2_cid&)> on_retire_cid_;
  std::function<void()> on_established_;
  std::function<void()> on_terminated_;
};

}  // namespace tunnelkit::cloudflare::quic
