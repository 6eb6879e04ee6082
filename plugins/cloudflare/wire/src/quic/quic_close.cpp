#include "tunnelkit/cloudflare/wire/quic/quic_connection.hpp"

#include <spdlog/spdlog.h>

#include "quic_internal.hpp"
#include "quic_tls.hpp"

namespace tunnelkit::cloudflare::quic {

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
  if (n > 0) link_->Send(tx_.data(), static_cast<std::size_t>(n), ps.path);
}

QuicCloseInfo QuicConnection::PeerCloseInfo() const {
  QuicCloseInfo info;
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
                   (info.application ? "application error " : "transport error ") + Hex(info.code) +
                   (info.reason.empty() ? "" : " \"" + info.reason + "\"");
  }
  return info;
}

std::uint8_t QuicConnection::TlsFailureInfo(QuicCloseInfo& info) const {
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
  return alert != 0 ? alert : static_cast<std::uint8_t>(GNUTLS_A_HANDSHAKE_FAILURE);
}

void QuicConnection::HandleLibError(int rv, bool from_read) {
  if (closed_) return;
  QuicCloseInfo info;
  ngtcp2_connection_close_error ccerr;
  ngtcp2_connection_close_error_default(&ccerr);

  if (rv == NGTCP2_ERR_DRAINING || rv == NGTCP2_ERR_CLOSING) {
    Terminate(PeerCloseInfo());  // the peer closed the connection
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
    const std::uint8_t alert = TlsFailureInfo(info);
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

}  // namespace tunnelkit::cloudflare::quic
