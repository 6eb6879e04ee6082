#include "tunnelkit/cloudflare/wire/quic/quic_connection.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>

#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>

#include "quic_internal.hpp"
#include "tunnelkit/cloudflare/wire/quic/quic_stream.hpp"

namespace tunnelkit::cloudflare::quic {

namespace {
// Live stream states, for tests that check nothing is leaked.
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
