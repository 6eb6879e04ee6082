#include "tunnelkit/stream/splice.hpp"

#include <memory>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace tunnelkit {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {

struct SpliceState {
  explicit SpliceState(asio::any_io_executor ex)
      : done(ex, asio::steady_timer::time_point::max()) {}
  asio::steady_timer done;  // cancelled when the last direction finishes
  int running = 2;
  error_code ec;
};

asio::awaitable<std::uint64_t> Pump(Stream& from, Stream& to, std::size_t buffer_size,
                                    std::shared_ptr<SpliceState> state) {
  std::vector<char> buffer(buffer_size);
  std::uint64_t total = 0;
  for (;;) {
    IoResult r = co_await from.ReadSome(asio::buffer(buffer));
    if (r.ec == asio::error::eof) {
      error_code ec = co_await to.ShutdownWrite();
      if (ec && !state->ec) state->ec = ec;
      break;
    }
    if (r.ec) {
      if (!state->ec) state->ec = r.ec;
      break;
    }
    IoResult w = co_await to.Write(asio::buffer(buffer.data(), r.bytes));
    total += w.bytes;
    if (w.ec) {
      if (!state->ec) state->ec = w.ec;
      break;
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

asio::awaitable<SpliceResult> Splice(Stream& a, Stream& b, std::size_t buffer_size) {
  auto ex = co_await asio::this_coro::executor;
  auto state = std::make_shared<SpliceState>(ex);
  SpliceResult result;
  auto finish = [state](std::uint64_t* counter) {
    return [state, counter](std::exception_ptr e, std::uint64_t n) {
      *counter = n;
      if (e && !state->ec) state->ec = asio::error::fault;
      if (--state->running == 0) state->done.cancel();
    };
  };
  asio::co_spawn(ex, Pump(a, b, buffer_size, state), finish(&result.a_to_b));
  asio::co_spawn(ex, Pump(b, a, buffer_size, state), finish(&result.b_to_a));
  while (state->running > 0) {
    error_code ec;
    co_await state->done.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  result.ec = state->ec;
  co_return result;
}

}  // namespace tunnelkit
