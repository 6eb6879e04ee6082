#include "transport/mux_splice.hpp"

#include <algorithm>
#include <memory>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "transport/socket_copy.hpp"
#include "tunnelkit/buffer_pool.hpp"

namespace tunnelkit::zlayer::transport {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;

namespace {

// Buffers only while bytes move; few idle ones kept (each is a page-touched 64 KiB).
constexpr std::size_t kBuffer = 64 * 1024;
constexpr std::size_t kPoolFree = 8;

BufferPool& Buffers() {
  return ThreadBufferPool(kBuffer, kPoolFree);
}

asio::awaitable<IoResult> CopyStreamToTcp(mux::MuxStream& from, TcpStream& to) {
  std::uint64_t total = 0;
  for (;;) {
    std::uint8_t first = 0;  // an idle stream waits here, with no buffer
    auto r = co_await from.ReadSome(asio::buffer(&first, 1));
    if (r.ec) co_return IoResult{r.ec, total};
    Chunk buffer = Buffers().Acquire();
    auto space = buffer.writable();
    space[0] = first;
    std::size_t filled = 1;
    // What the multiplexer already holds for this stream comes without waiting.
    while (filled < space.size() && from.buffered() > 0) {
      r = co_await from.ReadSome(asio::buffer(space.data() + filled, space.size() - filled));
      if (r.ec) break;
      filled += r.bytes;
    }
    const auto w = co_await to.Write(asio::buffer(space.data(), filled));
    total += w.bytes;
    if (w.ec) co_return IoResult{w.ec, total};
  }
}

struct SpliceState {
  explicit SpliceState(asio::any_io_executor ex)
      : done(ex, asio::steady_timer::time_point::max()) {}
  asio::steady_timer done;
  int running = 2;
  error_code ec;
};

}  // namespace

asio::awaitable<SpliceResult> SpliceMux(TcpStream& tcp, mux::MuxStream& stream) {
  auto ex = co_await asio::this_coro::executor;
  auto state = std::make_shared<SpliceState>(ex);
  SpliceResult result;
  auto finish = [state, &tcp, &stream](std::uint64_t* counter) {
    return [state, counter, &tcp, &stream](std::exception_ptr e, IoResult r) {
      *counter = r.bytes;
      if (e && !state->ec) state->ec = asio::error::fault;
      if (--state->running == 0) state->done.cancel();
      if (state->ec) {
        tcp.Reset();
        stream.Reset();
      }
    };
  };
  // A direction's end: its eof half-closes the other side; its first failure is the splice's.
  auto end_direction = [state](IoResult r, Stream& target) -> asio::awaitable<IoResult> {
    if (r.ec == asio::error::eof) {
      const error_code ec = co_await target.ShutdownWrite();
      if (ec && !state->ec) state->ec = ec;
      r.ec = {};
    } else if (r.ec && !state->ec) {
      state->ec = r.ec;
    }
    co_return r;
  };
  // (Two statements each: g++ 12 mishandles a temporary awaitable kept across another co_await.)
  auto tcp_to_stream = [&]() -> asio::awaitable<IoResult> {
    const IoResult r = co_await CopySocketToStream(tcp, stream, Buffers);
    co_return co_await end_direction(r, stream);
  };
  auto stream_to_tcp = [&]() -> asio::awaitable<IoResult> {
    const IoResult r = co_await CopyStreamToTcp(stream, tcp);
    co_return co_await end_direction(r, tcp);
  };
  // One direction in a coroutine of its own, the other in this one.
  asio::co_spawn(ex, stream_to_tcp(), finish(&result.b_to_a));
  {
    IoResult r;
    std::exception_ptr failure;
    try {
      r = co_await tcp_to_stream();
    } catch (...) {
      failure = std::current_exception();
    }
    finish (&result.a_to_b)(failure, r);
  }
  while (state->running > 0) {
    error_code ec;
    co_await state->done.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  result.ec = state->ec;
  co_return result;
}

}  // namespace tunnelkit::zlayer::transport
