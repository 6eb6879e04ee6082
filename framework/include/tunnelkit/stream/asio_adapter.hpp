// StreamRef: makes a tunnelkit::Stream usable where Asio/Beast expect an AsyncReadStream and
// AsyncWriteStream (beast::http::async_read, websocket::stream<StreamRef>, asio::async_write).
// It does not own the stream. Each operation runs as a coroutine on the stream's executor and
// completes through the handler's associated executor, never inline.
#pragma once

#include <cstddef>
#include <exception>
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

namespace tunnelkit {

class StreamRef {
 public:
  using executor_type = boost::asio::any_io_executor;

  explicit StreamRef(Stream& stream) : stream_(&stream) {}

  executor_type get_executor() const { return stream_->get_executor(); }
  Stream& stream() const { return *stream_; }

  template <class MutableBufferSequence, class ReadToken>
  auto async_read_some(const MutableBufferSequence& buffers, ReadToken&& token) {
    boost::asio::mutable_buffer first;
    for (auto it = boost::asio::buffer_sequence_begin(buffers);
         it != boost::asio::buffer_sequence_end(buffers); ++it) {
      if (boost::asio::mutable_buffer(*it).size() != 0) {
        first = *it;
        break;
      }
    }
    return Run(DoRead(stream_, first), std::forward<ReadToken>(token));
  }

  template <class ConstBufferSequence, class WriteToken>
  auto async_write_some(const ConstBufferSequence& buffers, WriteToken&& token) {
    boost::asio::const_buffer first;
    for (auto it = boost::asio::buffer_sequence_begin(buffers);
         it != boost::asio::buffer_sequence_end(buffers); ++it) {
      if (boost::asio::const_buffer(*it).size() != 0) {
        first = *it;
        break;
      }
    }
    return Run(DoWrite(stream_, first), std::forward<WriteToken>(token));
  }

 private:
  static boost::asio::awaitable<IoResult> DoRead(Stream* s, boost::asio::mutable_buffer b) {
    if (b.size() == 0) co_return IoResult{};
    co_return co_await s->ReadSome(b);
  }
  static boost::asio::awaitable<IoResult> DoWrite(Stream* s, boost::asio::const_buffer b) {
    if (b.size() == 0) co_return IoResult{};
    co_return co_await s->Write(b);
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

  Stream* stream_;
};

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
