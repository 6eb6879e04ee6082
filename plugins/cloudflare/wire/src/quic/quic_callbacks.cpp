#include "quic_callbacks.hpp"

#include <cstring>

#include <ngtcp2/ngtcp2_crypto_gnutls.h>

#include <boost/asio/post.hpp>

#include "quic_internal.hpp"
#include "quic_tls.hpp"

namespace tunnelkit::cloudflare::quic {

// The friend of QuicConnection that ngtcp2 calls into.
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

namespace detail {

void FillCallbacks(ngtcp2_callbacks& cb, QuicConnection::Role role) {
  QuicCallbacks::Fill(cb, role);
}

ngtcp2_conn* ConnOfRef(ngtcp2_crypto_conn_ref* ref) {
  return QuicCallbacks::GetConn(ref);
}

}  // namespace detail

}  // namespace tunnelkit::cloudflare::quic
