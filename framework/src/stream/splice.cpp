#include "tunnelkit/stream/splice.hpp"

#include <algorithm>
#include <memory>
#include <utility>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "framed_pump.hpp"
#include "tunnelkit/buffer_pool.hpp"

namespace tunnelkit {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {

struct SpliceState {
  explicit SpliceState(asio::any_io_executor ex)
      : done(ex, asio::steady_timer::time_point::max()),
        linger(ex),
        failure(std::make_shared<detail::SpliceFailure>()) {}
  asio::steady_timer done;  // cancelled whenever a direction finishes
  asio::steady_timer linger;
  int running = 2;
  std::shared_ptr<detail::SpliceFailure> failure;  // the first error of either direction
};

// A direction that is idle holds no big buffer: on a socket it waits for readability before
// taking one from the thread's pool; on other streams it reads into a small buffer first and
// moves to a pooled one only while reads fill the small one (bulk). A pooled buffer goes back
// once a read comes back short (the source is drained for now). With thousands of idle
// connections this is the difference between ~0 and 2 x buffer_size bytes each.
constexpr std::size_t kSmallRead = 2 * 1024;
constexpr std::size_t kPoolFreeChunks = 16;

BufferPool& PumpPool(std::size_t buffer_size) {
  return ThreadBufferPool(buffer_size, kPoolFreeChunks);
}

// Waits until a socket stream is readable (bytes, eof or an error); false for streams that
// cannot be waited on this way.
asio::awaitable<bool> WaitReadable(Stream& stream) {
  error_code ec;
  if (auto* tcp = stream.plain_tcp_socket()) {
    co_await tcp->async_wait(asio::socket_base::wait_read,
                             asio::redirect_error(asio::use_awaitable, ec));
    co_return true;
  }
  if (auto* unix_socket = stream.plain_unix_socket()) {
    co_await unix_socket->async_wait(asio::socket_base::wait_read,
                                     asio::redirect_error(asio::use_awaitable, ec));
    co_return true;
  }
  co_return false;
}

asio::awaitable<std::uint64_t> Pump(Stream& from, Stream& to, std::size_t buffer_size,
                                    std::shared_ptr<detail::SpliceFailure> state) {
  if (from.framed() || to.framed()) co_return co_await detail::PumpFramed(from, to, state);
  buffer_size = std::max<std::size_t>(buffer_size, 1);
  const std::size_t small_size = std::min(kSmallRead, buffer_size);
  std::unique_ptr<char[]> small;  // allocated on first use
  Chunk big;
  std::uint64_t total = 0;
  for (;;) {
    bool waited = false;
    if (!big) waited = co_await WaitReadable(from);
    asio::mutable_buffer target;
    if (big || waited || small_size == buffer_size) {
      if (!big) big = PumpPool(buffer_size).Acquire();
      target = asio::buffer(big.writable().data(), buffer_size);
    } else {
      if (!small) small.reset(new char[small_size]);
      target = asio::buffer(small.get(), small_size);
    }
    IoResult r = co_await from.ReadSome(target);
    if (r.ec == asio::error::eof) {
      error_code ec = co_await to.ShutdownWrite();
      if (ec && !state->ec) state->ec = ec;
      break;
    }
    if (r.ec) {
      if (!state->ec) state->ec = r.ec;
      break;
    }
    IoResult w = co_await to.Write(asio::buffer(target.data(), r.bytes));
    total += w.bytes;
    if (w.ec) {
      if (!state->ec) state->ec = w.ec;
      break;
    }
    if (big && r.bytes < buffer_size) {
      big = Chunk();  // drained: give the buffer back until the next burst
    } else if (!big && r.bytes == target.size()) {
      big = PumpPool(buffer_size).Acquire();  // a full small read: bulk data, read more at once
    }
  }
  if (state->ec) {
    // One direction failed: abort both so the other pump stops too.
    from.Reset();
    to.Reset();
  }
  co_return total;
}

}  // namespace

asio::awaitable<SpliceResult> Splice(Stream& a, Stream& b, SpliceOptions options) {
  auto ex = co_await asio::this_coro::executor;
  auto state = std::make_shared<SpliceState>(ex);
  SpliceResult result;
  bool b_to_a_done = false;
  auto finish = [state](std::uint64_t* counter, bool* done) {
    return [state, counter, done](std::exception_ptr e, std::uint64_t n) {
      *counter = n;
      if (done) *done = true;
      if (e && !state->failure->ec) state->failure->ec = asio::error::fault;
      --state->running;
      state->done.cancel();
    };
  };
  asio::co_spawn(ex, Pump(a, b, options.buffer_size, state->failure),
                 finish(&result.a_to_b, nullptr));
  asio::co_spawn(ex, Pump(b, a, options.buffer_size, state->failure),
                 finish(&result.b_to_a, &b_to_a_done));
  bool lingering = false;
  while (state->running > 0) {
    if (b_to_a_done && !lingering && options.linger != std::chrono::milliseconds::max()) {
      lingering = true;
      state->linger.expires_after(options.linger);
      // Runs after this coroutine only when the splice has ended (running == 0): then it
      // touches neither stream.
      state->linger.async_wait([state, &a, &b](error_code ec) {
        if (ec || state->running == 0) return;
        a.Reset();
        b.Reset();
      });
    }
    error_code ec;
    co_await state->done.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  state->linger.cancel();
  result.ec = state->failure->ec;
  co_return result;
}

}  // namespace tunnelkit
