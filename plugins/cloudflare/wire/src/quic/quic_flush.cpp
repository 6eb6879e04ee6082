#include "tunnelkit/cloudflare/wire/quic/quic_connection.hpp"

#include <algorithm>
#include <array>
#include <cstring>

#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>

#include "quic_internal.hpp"

namespace tunnelkit::cloudflare::quic {

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
  ngtcp2_path path = PathOf(local_, remote);
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

namespace {

// The packets of one flush waiting to leave together (GSO): tx[0, bytes), `count` segments of
// `segment` bytes (the last may be shorter), all to one path.
class PacketBatch {
 public:
  PacketBatch(detail::UdpLink& link, std::vector<std::uint8_t>& tx) : link_(link), tx_(tx) {
    ngtcp2_path_storage_zero(&path_);
  }
  PacketBatch(const PacketBatch&) = delete;
  PacketBatch& operator=(const PacketBatch&) = delete;

  // Where the next packet (up to `max_payload` bytes) is written; sends the batch first when
  // it is full.
  std::uint8_t* Room(std::size_t max_payload) {
    if (tx_.size() - bytes_ < max_payload || count_ == kMaxGsoSegments) Send();
    return tx_.data() + bytes_;
  }

  // A packet of `size` bytes for `path` was written at Room().
  void Add(std::size_t size, const ngtcp2_path& path) {
    const bool same_path =
        count_ > 0 && path.remote.addrlen == path_.path.remote.addrlen &&
        std::memcmp(path.remote.addr, path_.path.remote.addr, path.remote.addrlen) == 0;
    if (count_ > 0 && (!same_path || size > segment_)) {
      // Cannot join the batch: send the batch, then start a new one with this packet.
      std::uint8_t* packet = tx_.data() + bytes_;
      link_.SendBatch(tx_.data(), bytes_, segment_, count_, path_.path);
      std::memmove(tx_.data(), packet, size);
      bytes_ = 0;
      count_ = 0;
    }
    if (count_ == 0) {
      segment_ = size;
      ngtcp2_path_copy(&path_.path, &path);
    }
    bytes_ += size;
    ++count_;
    // A shorter packet ends a GSO batch.
    if (size < segment_) Send();
  }

  void Send() {
    if (count_ > 0) link_.SendBatch(tx_.data(), bytes_, segment_, count_, path_.path);
    bytes_ = 0;
    count_ = 0;
  }

 private:
  detail::UdpLink& link_;
  std::vector<std::uint8_t>& tx_;
  std::size_t bytes_ = 0;
  std::size_t count_ = 0;
  std::size_t segment_ = 0;
  ngtcp2_path_storage path_;
};

// The stream data of `st` not yet handed to ngtcp2, as up to vec.size() pieces; adds the FIN
// flag when they reach the end of a stream whose writer has finished.
std::size_t GatherUnsent(detail::StreamState& st, std::array<ngtcp2_vec, 16>& vec,
                         std::uint32_t& flags) {
  std::size_t count = 0;
  std::uint64_t covered = st.sent;
  for (std::size_t i = st.send_index; i < st.chunks.size() && count < vec.size(); ++i) {
    auto& chunk = st.chunks[i];
    const auto skip = static_cast<std::size_t>(covered - chunk.offset);
    vec[count].base = chunk.data.data() + skip;
    vec[count].len = chunk.data.size() - skip;
    covered += vec[count].len;
    ++count;
  }
  if (st.fin_requested && covered == st.queued) flags |= NGTCP2_WRITE_STREAM_FLAG_FIN;
  return count;
}

// ngtcp2 took `accepted` bytes of `st` (and its FIN if `flags` has it and all was taken): moves
// the send position on and wakes the writer. True when stream data went out.
bool AccountSent(detail::StreamState& st, ngtcp2_ssize accepted, std::uint32_t flags) {
  st.sent += static_cast<std::uint64_t>(accepted);
  while (st.send_index < st.chunks.size() &&
         st.chunks[st.send_index].offset + st.chunks[st.send_index].data.size() <= st.sent) {
    ++st.send_index;
  }
  if ((flags & NGTCP2_WRITE_STREAM_FLAG_FIN) && st.sent == st.queued) st.fin_sent = true;
  Notify(st.write_wait);
  return accepted > 0;
}

}  // namespace

void QuicConnection::RetryBlockedStreams() {
  // ngtcp2 0.12 has no callback for a peer's STOP_SENDING: it just resets our send side.
  // Retrying flow-blocked streams after new packets lets writev_stream report that
  // (STREAM_SHUT_WR) instead of leaving their writers waiting for credit that never comes.
  for (std::int64_t id : blocked_) {
    if (auto it = streams_.find(id); it != streams_.end() && it->second->flow_blocked) {
      it->second->flow_blocked = false;
      QueueSend(*it->second);
    }
  }
  blocked_.clear();
}

detail::StreamState* QuicConnection::NextSendStream() {
  // The stream at the front of the queue, skipping ones with nothing left to send.
  while (!send_queue_.empty()) {
    auto it = streams_.find(send_queue_.front());
    if (it != streams_.end() && it->second->HasPendingSend() && !it->second->flow_blocked &&
        !it->second->write_error) {
      return it->second.get();
    }
    if (it != streams_.end()) it->second->in_send_queue = false;
    send_queue_.pop_front();
  }
  return nullptr;
}

bool QuicConnection::OnStreamWriteStopped(detail::StreamState& st, ngtcp2_ssize result,
                                          ngtcp2_ssize accepted, std::uint32_t flags,
                                          bool& stream_data) {
  if (result == NGTCP2_ERR_WRITE_MORE) {
    // Room left in the packet: account for the data and fill it with the next stream.
    stream_data = AccountSent(st, accepted, flags) || stream_data;
    if (!st.HasPendingSend()) {
      st.in_send_queue = false;
      send_queue_.pop_front();
    }
    return true;
  }
  if (result != NGTCP2_ERR_STREAM_DATA_BLOCKED && result != NGTCP2_ERR_STREAM_SHUT_WR) {
    return false;
  }
  if (result == NGTCP2_ERR_STREAM_DATA_BLOCKED) {
    st.flow_blocked = true;
    blocked_.push_back(st.id);
  } else if (!st.write_error) {
    // We only shut the send side down after setting write_error, so ngtcp2 did it in
    // answer to the peer's STOP_SENDING.
    st.write_error = QuicErrc::kStopSending;
    Notify(st.write_wait);
  }
  st.in_send_queue = false;
  send_queue_.pop_front();
  return true;
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
    received_since_flush_ = false;
    RetryBlockedStreams();
  }
  std::size_t packets = 0;
  bool stream_data = false;  // this flush carried new stream data
  std::array<ngtcp2_vec, 16> vec;
  PacketBatch batch(*link_, tx_);
  while (packets < max_packets) {
    std::uint8_t* out = batch.Room(max_payload);
    detail::StreamState* st = NextSendStream();
    std::int64_t stream_id = -1;
    std::size_t vcnt = 0;
    std::uint32_t flags = NGTCP2_WRITE_STREAM_FLAG_MORE;
    if (st != nullptr) {
      stream_id = st->id;
      vcnt = GatherUnsent(*st, vec, flags);
    }
    ngtcp2_ssize accepted = -1;
    ngtcp2_ssize n = ngtcp2_conn_writev_stream(conn_, &ps.path, &pi, out, max_payload, &accepted,
                                               flags, stream_id, vec.data(), vcnt, ts);
    if (n < 0) {
      if (st != nullptr && OnStreamWriteStopped(*st, n, accepted, flags, stream_data)) continue;
      batch.Send();
      HandleLibError(static_cast<int>(n), false);
      return;
    }
    if (st != nullptr && accepted >= 0) {
      stream_data = AccountSent(*st, accepted, flags) || stream_data;
      send_queue_.pop_front();
      if (st->HasPendingSend()) {
        send_queue_.push_back(st->id);  // round robin between streams
      } else {
        st->in_send_queue = false;
      }
    }
    if (n == 0) break;  // congestion or flow control limited, or nothing to send
    batch.Add(static_cast<std::size_t>(n), ps.path);
    ++packets;
  }
  batch.Send();
  // Pacing spaces out bulk data. A flush of ACKs and window updates only is not paced: its
  // pacing deadline would make the timer fire (a timerfd_settime, a wake-up, another flush)
  // after every ACK a receiver sends, with nothing to send then.
  if (stream_data) ngtcp2_conn_update_pkt_tx_time(conn_, ts);
  if (packets == max_packets) ScheduleFlush();  // more may be ready; let reads interleave
  ArmTimer();
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

}  // namespace tunnelkit::cloudflare::quic
