// StreamRef: makes a tunnelkit::Stream usable where Asio/Beast expect an AsyncReadStream and
// AsyncWriteStream (beast::http::async_read, websocket::stream<StreamRef>, asio::async_write).
// It does not own the stream. Each operation runs as a coroutine on the stream's executor and
// completes through the handler's associated executor, never inline. A TcpStream is the
// exception: its socket takes the operations directly (gathered writes included), since the
// coroutine around every read and write was a sixth of a busy HTTP proxy's time.
#pragma once

#include <algorithm>
#include <cstddef>
#include <exception>
#include <string>
#include <utility>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core/role.hpp>

#include "tunnelkit/stream.hpp"
#include "tunnelkit/stream/socket_stream.hpp"

namespace tunnelkit {

// The first non-empty buffer of a mutable buffer sequence (an empty one if there is none), for
// layers whose operations read into one buffer at a time.
template <class MutableBufferSequence>
boost::asio::mutable_buffer FirstNonEmptyBuffer(const MutableBufferSequence& buffers) {
  for (auto it = boost::asio::buffer_sequence_begin(buffers);
       it != boost::asio::buffer_sequence_end(buffers); ++it) {
    if (boost::asio::mutable_buffer(*it).size() != 0) return *it;
  }
  return {};
}

class StreamRef {
 public:
  using executor_type = boost::asio::any_io_executor;

  explicit StreamRef(Stream& stream) : stream_(&stream), tcp_(stream.plain_tcp_socket()) {}

  executor_type get_executor() const { return stream_->get_executor(); }
  Stream& stream() const { return *stream_; }

  template <class MutableBufferSequence, class ReadToken>
  auto async_read_some(const MutableBufferSequence& buffers, ReadToken&& token) {
    if (tcp_) return tcp_->async_read_some(buffers, std::forward<ReadToken>(token));
    const boost::asio::mutable_buffer first = FirstNonEmptyBuffer(buffers);
    IoResult done;
    if (first.size() > 0 && stream_->TryReadSome(first, done)) {
      return Complete(done, std::forward<ReadToken>(token));
    }
    return Run(DoRead(stream_, first), std::forward<ReadToken>(token));
  }

  // Several buffers (a chunk header, the data, CRLF) are gathered into one write of up to
  // kGatherLimit bytes, so that a chunked body does not cost three writes per chunk.
  template <class ConstBufferSequence, class WriteToken>
  auto async_write_some(const ConstBufferSequence& buffers, WriteToken&& token) {
    if (tcp_) return tcp_->async_write_some(buffers, std::forward<WriteToken>(token));
    boost::asio::const_buffer first;
    std::size_t count = 0;
    std::size_t total = 0;
    for (auto it = boost::asio::buffer_sequence_begin(buffers);
         it != boost::asio::buffer_sequence_end(buffers); ++it) {
      boost::asio::const_buffer b(*it);
      if (b.size() == 0) continue;
      if (count++ == 0) first = b;
      total += b.size();
    }
    if (count <= 1 || first.size() >= kGatherLimit) {
      IoResult done;
      if (first.size() > 0 && stream_->TryWrite(first, done)) {
        return Complete(done, std::forward<WriteToken>(token));
      }
      return Run(DoWrite(stream_, first), std::forward<WriteToken>(token));
    }
    std::string gathered;
    gathered.reserve(std::min(total, kGatherLimit));
    for (auto it = boost::asio::buffer_sequence_begin(buffers);
         it != boost::asio::buffer_sequence_end(buffers) && gathered.size() < kGatherLimit; ++it) {
      boost::asio::const_buffer b(*it);
      std::size_t take = std::min(b.size(), kGatherLimit - gathered.size());
      gathered.append(static_cast<const char*>(b.data()), take);
    }
    IoResult done;
    if (stream_->TryWrite(boost::asio::buffer(gathered), done)) {
      return Complete(done, std::forward<WriteToken>(token));
    }
    return Run(DoWriteCopy(stream_, std::move(gathered)), std::forward<WriteToken>(token));
  }

  static constexpr std::size_t kGatherLimit = 64 * 1024;

 private:
  static boost::asio::awaitable<IoResult> DoRead(Stream* s, boost::asio::mutable_buffer b) {
    if (b.size() == 0) co_return IoResult{};
    co_return co_await s->ReadSome(b);
  }
  static boost::asio::awaitable<IoResult> DoWrite(Stream* s, boost::asio::const_buffer b) {
    if (b.size() == 0) co_return IoResult{};
    co_return co_await s->Write(b);
  }

  static boost::asio::awaitable<IoResult> DoWriteCopy(Stream* s, std::string data) {
    co_return co_await s->Write(boost::asio::buffer(data));
  }

  // The awaitable is created lazily (it does not start until co_spawn runs it).
  template <class Token>
  auto Run(boost::asio::awaitable<IoResult> op, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [](auto handler, Stream* stream, boost::asio::awaitable<IoResult> op) {
          boost::asio::co_spawn(
              stream->get_executor(), std::move(op),
              [handler = std::move(handler)](std::exception_ptr e, IoResult r) mutable {
                if (e) r.ec = boost::asio::error::fault;
                auto hex = boost::asio::get_associated_executor(handler);
                boost::asio::dispatch(
                    hex, [handler = std::move(handler), r]() mutable { handler(r.ec, r.bytes); });
              });
        },
        token, stream_, std::move(op));
  }

  // An operation that already finished (Try*): the handler runs through its executor, never
  // inline, as for any asynchronous operation.
  template <class Token>
  auto Complete(IoResult r, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [](auto handler, Stream* stream, IoResult r) {
          auto hex = boost::asio::get_associated_executor(handler, stream->get_executor());
          boost::asio::post(
              hex, [handler = std::move(handler), r]() mutable { handler(r.ec, r.bytes); });
        },
        token, stream_, r);
  }

  Stream* stream_;
  boost::asio::ip::tcp::socket* tcp_;  // set when the stream is a plain TCP socket
};

// Beast closes the lowest layer on timeouts and failures through this (found by ADL).
inline void beast_close_socket(StreamRef& stream) {
  stream.stream().Reset();
}

// websocket::stream<StreamRef> closes the transport through these (found by ADL).
void teardown(boost::beast::role_type role, StreamRef& stream, boost::system::error_code& ec);

template <class TeardownHandler>
void async_teardown(boost::beast::role_type, StreamRef& stream, TeardownHandler&& handler) {
  Stream* s = &stream.stream();
  boost::asio::co_spawn(
      s->get_executor(),
      [s]() -> boost::asio::awaitable<boost::system::error_code> {
        co_return co_await s->ShutdownWrite();
      },
      [handler = std::forward<TeardownHandler>(handler)](std::exception_ptr,
                                                         boost::system::error_code) mutable {
        auto hex = boost::asio::get_associated_executor(handler);
        boost::asio::dispatch(hex, [handler = std::move(handler)]() mutable {
          handler(boost::system::error_code{});
        });
      });
}

}  // namespace tunnelkit
