// TlsLayer: the core's TlsStream as Beast's next layer for data WebSockets over wss, with reads
// and writes as plain composed operations (SSL_read_ex / SSL_write_ex on the non-blocking
// socket, a socket wait when OpenSSL asks for one).
//
// Why not StreamRef: StreamRef runs every read and write as a coroutine (co_spawn) over the
// Stream interface. A held, idle data connection keeps its pending read, so each one kept the
// spawned coroutine's frames and thread alive besides Beast's own read operation: with a
// thousand held wss connections that was several MB per process (issue 8). Here an idle read is
// one socket wait holding the handler chain, and a read or write that can finish at once costs
// no coroutine and no allocation.
#pragma once

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstring>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/beast/core/role.hpp>
#include <boost/system/error_code.hpp>

#include "tunnelkit/stream/asio_adapter.hpp"
#include "tunnelkit/stream/tls_stream.hpp"

namespace tunnelkit::zlayer::transport {

namespace tls_layer_detail {

// After an OpenSSL call returned `ret` <= 0 with an error other than WANT_READ/WANT_WRITE.
inline boost::system::error_code Failure(SSL* ssl, int ret) {
  const int err = SSL_get_error(ssl, ret);
  if (err == SSL_ERROR_ZERO_RETURN) return boost::asio::error::eof;
  const unsigned long code = ERR_peek_last_error();
  const int saved_errno = errno;
  ERR_clear_error();
  if (code != 0) {
    return boost::system::error_code(static_cast<int>(code),
                                     boost::asio::error::get_ssl_category());
  }
  if (err == SSL_ERROR_SYSCALL && saved_errno != 0) {
    return boost::system::error_code(saved_errno, boost::system::system_category());
  }
  return boost::asio::error::connection_reset;
}

// Common state machine: `attempt` returns 1 with `bytes` set, or the OpenSSL return value.
// An operation that finishes without waiting completes through a post, never inline.
template <class Attempt>
struct TlsOp {
  TlsStream* tls;
  Attempt attempt;
  enum class State { kTry, kWaited, kPosted } state = State::kTry;
  boost::system::error_code result_ec{};
  std::size_t result_bytes = 0;

  template <class Self>
  void operator()(Self& self, boost::system::error_code ec = {}) {
    if (state == State::kPosted) {
      self.complete(result_ec, result_bytes);
      return;
    }
    if (ec) {  // the wait failed: the socket was closed under us
      self.complete(ec, 0);
      return;
    }
    SSL* ssl = tls->native_handle();
    ERR_clear_error();
    errno = 0;
    std::size_t bytes = 0;
    const int ret = attempt(ssl, bytes);
    boost::system::error_code result;
    if (ret != 1) {
      const int err = SSL_get_error(ssl, ret);
      if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
        state = State::kWaited;
        tls->socket().async_wait(err == SSL_ERROR_WANT_READ
                                     ? boost::asio::ip::tcp::socket::wait_read
                                     : boost::asio::ip::tcp::socket::wait_write,
                                 std::move(self));
        return;
      }
      result = Failure(ssl, ret);
      bytes = 0;
    }
    if (state == State::kWaited) {
      self.complete(result, bytes);
      return;
    }
    state = State::kPosted;
    result_ec = result;
    result_bytes = bytes;
    boost::asio::post(std::move(self));
  }
};

// Reads records until the buffer is full or what OpenSSL read ahead is used up (one scheduler
// round trip per burst rather than per 16 KiB record). A failure after some bytes is left for the
// next read to report (OpenSSL keeps it).
struct ReadAttempt {
  boost::asio::mutable_buffer buffer;
  int operator()(SSL* ssl, std::size_t& bytes) const {
    auto* out = static_cast<unsigned char*>(buffer.data());
    std::size_t total = 0;
    while (total < buffer.size()) {
      std::size_t n = 0;
      const int ret = SSL_read_ex(ssl, out + total, buffer.size() - total, &n);
      if (ret != 1) {
        if (total == 0) return ret;
        ERR_clear_error();
        break;
      }
      total += n;
      // Nothing decrypted or read ahead is left: another SSL_read would only meet an empty
      // socket (a wasted recv); the next read tries it.
      if (SSL_pending(ssl) == 0 && SSL_has_pending(ssl) == 0) break;
    }
    bytes = total;
    return 1;
  }
};

// Writes as much of the buffers as the socket takes. Beast writes a frame as its header and
// payload (two buffers): the header goes out with the payload's start, copied in front of it,
// rather than as a tiny record of its own.
struct WriteAttempt {
  static constexpr std::size_t kGather = 16 * 1024;
  const boost::asio::const_buffer* buffers;
  std::size_t count;

  int operator()(SSL* ssl, std::size_t& bytes) const {
    std::size_t total = 0;
    std::size_t index = 0;   // buffer being written
    std::size_t offset = 0;  // bytes of it already written
    if (count > 1 && buffers[0].size() < kGather) {
      std::array<unsigned char, kGather> gathered;
      std::size_t used = 0;
      for (std::size_t i = 0; i < count && used < kGather; ++i) {
        const std::size_t take = std::min(buffers[i].size(), kGather - used);
        std::memcpy(gathered.data() + used, buffers[i].data(), take);
        used += take;
      }
      std::size_t n = 0;
      const int ret = SSL_write_ex(ssl, gathered.data(), used, &n);
      if (ret != 1) return ret;
      total = n;
      // Where the rest starts.
      std::size_t skip = n;
      while (index < count && skip >= buffers[index].size()) skip -= buffers[index++].size();
      offset = skip;
      if (n < used) {  // a partial write: the caller comes back for the rest
        bytes = total;
        return 1;
      }
    }
    while (index < count) {
      const auto* data = static_cast<const unsigned char*>(buffers[index].data()) + offset;
      const std::size_t left = buffers[index].size() - offset;
      std::size_t n = 0;
      const int ret = SSL_write_ex(ssl, data, left, &n);
      if (ret != 1) {
        if (total == 0) return ret;
        // What was written stands; the socket is full (or failed: the next write says so).
        ERR_clear_error();
        break;
      }
      total += n;
      offset += n;
      if (offset == buffers[index].size()) {
        ++index;
        offset = 0;
      }
    }
    bytes = total;
    return 1;
  }
};

}  // namespace tls_layer_detail

class TlsLayer {
 public:
  using executor_type = boost::asio::any_io_executor;

  explicit TlsLayer(TlsStream& tls) : tls_(&tls) {}

  executor_type get_executor() const { return tls_->get_executor(); }
  TlsStream& tls() const { return *tls_; }

  template <class MutableBufferSequence, class ReadToken>
  auto async_read_some(const MutableBufferSequence& buffers, ReadToken&& token) {
    const boost::asio::mutable_buffer first = FirstNonEmptyBuffer(buffers);
    using Op = tls_layer_detail::TlsOp<tls_layer_detail::ReadAttempt>;
    return boost::asio::async_compose<ReadToken, void(boost::system::error_code, std::size_t)>(
        Op{tls_, tls_layer_detail::ReadAttempt{first}}, token, tls_->socket());
  }

  // Writes at least one record's worth of the buffers (partial writes, as write_some may).
  template <class ConstBufferSequence, class WriteToken>
  auto async_write_some(const ConstBufferSequence& buffers, WriteToken&& token) {
    std::size_t count = 0;
    for (auto it = boost::asio::buffer_sequence_begin(buffers);
         it != boost::asio::buffer_sequence_end(buffers) && count < write_buffers_.size(); ++it) {
      const boost::asio::const_buffer b(*it);
      if (b.size() != 0) write_buffers_[count++] = b;
    }
    using Op = tls_layer_detail::TlsOp<tls_layer_detail::WriteAttempt>;
    return boost::asio::async_compose<WriteToken, void(boost::system::error_code, std::size_t)>(
        Op{tls_, tls_layer_detail::WriteAttempt{write_buffers_.data(), count}}, token,
        tls_->socket());
  }

 private:
  TlsStream* tls_;
  // The buffers of the one write in flight (Beast runs one write at a time per stream).
  std::array<boost::asio::const_buffer, 4> write_buffers_{};
};

// Beast closes the lowest layer on failures through this (found by ADL).
inline void beast_close_socket(TlsLayer& layer) {
  layer.tls().Reset();
}

// websocket::stream<TlsLayer> ends the transport through these after a close handshake (ours
// never starts one; a peer's close frame gets close_notify, best effort, then the socket ends).
inline void teardown(boost::beast::role_type, TlsLayer& layer, boost::system::error_code& ec) {
  ERR_clear_error();
  SSL_shutdown(layer.tls().native_handle());
  ERR_clear_error();
  ec = {};
}

template <class TeardownHandler>
void async_teardown(boost::beast::role_type role, TlsLayer& layer, TeardownHandler&& handler) {
  boost::system::error_code ec;
  teardown(role, layer, ec);
  boost::asio::post(layer.get_executor(),
                    [handler = std::forward<TeardownHandler>(handler)]() mutable {
                      handler(boost::system::error_code{});
                    });
}

}  // namespace tunnelkit::zlayer::transport
