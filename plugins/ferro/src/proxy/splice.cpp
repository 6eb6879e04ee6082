#include "proxy/splice.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "codec/codec.hpp"
#include "mux/connection.hpp"
#include "mux/notifier.hpp"
#include "transport/socket_stream.hpp"
#include "tunnelkit/buffer_pool.hpp"
#include "tunnelkit/stream/kernel_pipe.hpp"

namespace tunnelkit::ferro {

namespace asio = boost::asio;

namespace {

struct SpliceState {
  explicit SpliceState(const asio::any_io_executor& ex) : done(ex), linger_timer(ex) {}
  Notifier done;
  asio::steady_timer linger_timer;
  int running = 2;
  bool failed = false;
};

constexpr std::size_t kPumpChunk = 64 * 1024;
constexpr std::size_t kPumpFreeChunks = 16;
constexpr std::size_t kFirstRead = 4 * 1024;

// The io thread's pool of pump buffers: a direction takes one only while it moves bytes, so
// idle connections (most of them, with 1000s open) hold none.
BufferPool& PumpBuffers() {
  return ThreadBufferPool(kPumpChunk, kPumpFreeChunks);
}

// The kernel path of one direction (KernelPipe): TCP socket -> stream of a plain-TCP
// connection, or the reverse. Taken once the direction proves bulky (a full chunk in one
// read), so the thousands of small, idle connections hold no pipes.
class KernelRoute {
 public:
  KernelRoute(Stream& from, Stream& to)
      : from_tcp_(dynamic_cast<TcpSocketStream*>(&from)),
        to_tcp_(dynamic_cast<TcpSocketStream*>(&to)),
        from_mux_(dynamic_cast<MuxStream*>(&from)),
        to_mux_(dynamic_cast<MuxStream*>(&to)),
        outbound_(from_tcp_ && to_mux_ && to_mux_->can_splice()),
        inbound_(from_mux_ && to_tcp_ && from_mux_->can_splice()) {}

  // After `moved` bytes went through a `chunk`-sized buffer.
  void Consider(std::size_t moved, std::size_t chunk) {
    if (pipe_ || failed_ || (!outbound_ && !inbound_) || moved < chunk) return;
    pipe_ = KernelPipe::Create();
    failed_ = pipe_ == nullptr;  // no descriptors left: keep copying
  }
  // True once the kernel path carries this direction (inbound: once nothing is buffered).
  bool Active() {
    if (!pipe_) return false;
    if (outbound_) return true;
    if (!attached_) attached_ = from_mux_->AttachSink(pipe_);
    return attached_;
  }
  asio::awaitable<IoResult> Move() {
    if (outbound_) co_return co_await to_mux_->SpliceFrom(from_tcp_->socket(), pipe_);
    co_return co_await from_mux_->SpliceTo(to_tcp_->socket());
  }

 private:
  TcpSocketStream* from_tcp_;
  TcpSocketStream* to_tcp_;
  MuxStream* from_mux_;
  MuxStream* to_mux_;
  bool outbound_;
  bool inbound_;
  std::shared_ptr<KernelPipe> pipe_;
  bool attached_ = false;
  bool failed_ = false;
};

// Moves one buffer's worth from `from` to `to` through memory. The result's error is the
// read's eof, or any failure of either side. A ferro stream's payloads are forwarded as they
// arrived, and bytes for one are read straight into the frame that carries them (no copy in
// between); `next_read` grows while reads fill it, so small exchanges take small buffers.
asio::awaitable<IoResult> CopySome(Stream& from, Stream& to, KernelRoute& route,
                                   std::size_t& next_read) {
  // The socket and ferro-stream operations are made here, not through the Stream calls or
  // helper coroutines: each of those is a coroutine frame (an allocation), and a small
  // request/response exchange made a dozen of them per message.
  auto* from_tcp = dynamic_cast<TcpSocketStream*>(&from);
  auto* to_tcp = dynamic_cast<TcpSocketStream*>(&to);
  // Waits until `from` has something to read (bytes, end of stream or an error), so that a
  // buffer is taken only when there is something to put in it.
  if (from_tcp) {
    boost::system::error_code ignored;
    co_await from_tcp->socket().async_wait(asio::ip::tcp::socket::wait_read,
                                           asio::redirect_error(asio::use_awaitable, ignored));
  }
  if (auto* mux = dynamic_cast<MuxStream*>(&from)) {
    if (!mux->readable()) co_await mux->WaitReadable();
    Bytes piece;
    IoResult r;
    if (!mux->TryReadPiece(piece, r)) r = co_await mux->ReadPiece(piece);
    if (r.ec) co_return r;
    IoResult w;
    if (to_tcp) {
      w.bytes = co_await asio::async_write(to_tcp->socket(), asio::buffer(piece),
                                           asio::redirect_error(asio::use_awaitable, w.ec));
    } else {
      w = co_await to.Write(asio::buffer(piece));
    }
    route.Consider(r.bytes, kMaxDataChunk);
    co_return w;
  }
  if (auto* mux = dynamic_cast<MuxStream*>(&to)) {
    Bytes frame(kDataFrameHeaderSize + next_read);  // not zeroed
    const auto space = asio::buffer(frame.data() + kDataFrameHeaderSize, next_read);
    IoResult r;
    if (from_tcp) {
      r.bytes = co_await from_tcp->socket().async_read_some(
          space, asio::redirect_error(asio::use_awaitable, r.ec));
    } else {
      r = co_await from.ReadSome(space);
    }
    if (r.ec) co_return r;
    const bool filled = r.bytes == next_read;
    frame.resize(kDataFrameHeaderSize + r.bytes);
    IoResult w;
    if (!mux->TryWriteFrame(frame, w)) w = co_await mux->WriteFrame(std::move(frame));
    route.Consider(r.bytes, kMaxDataChunk);
    if (filled) next_read = std::min(next_read * 2, kMaxDataChunk);
    co_return w;
  }
  Chunk buffer = PumpBuffers().Acquire();
  const auto space = buffer.writable();
  IoResult r = co_await from.ReadSome(asio::buffer(space.data(), space.size()));
  if (r.ec) co_return r;
  co_return co_await to.Write(asio::buffer(space.data(), r.bytes));
}

asio::awaitable<void> Pump(std::shared_ptr<Stream> from, std::shared_ptr<Stream> to,
                           std::shared_ptr<SpliceState> state, std::uint64_t* counter) {
  KernelRoute route(*from, *to);
  std::size_t next_read = kFirstRead;
  for (;;) {
    IoResult r =
        route.Active() ? co_await route.Move() : co_await CopySome(*from, *to, route, next_read);
    *counter += r.bytes;
    if (r.ec == asio::error::eof) {
      co_await to->ShutdownWrite();
      break;
    }
    if (r.ec || state->failed) {
      state->failed = true;
      from->Reset();
      to->Reset();
      break;
    }
  }
  --state->running;
  state->done.Notify();
}

}  // namespace

asio::awaitable<SpliceResult> Splice(std::shared_ptr<Stream> a, std::shared_ptr<Stream> b,
                                     std::chrono::milliseconds linger) {
  auto executor = a->get_executor();
  auto state = std::make_shared<SpliceState>(executor);
  auto result = std::make_shared<SpliceResult>();
  asio::co_spawn(executor, Pump(a, b, state, &result->a_to_b), asio::detached);
  asio::co_spawn(
      executor,
      [b, a, state, result, linger]() -> asio::awaitable<void> {
        co_await Pump(b, a, state, &result->b_to_a);
        if (linger != std::chrono::milliseconds::max() && state->running > 0) {
          state->linger_timer.expires_after(linger);
          boost::system::error_code ec;
          co_await state->linger_timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
          if (!ec && state->running > 0) {
            a->Reset();
            b->Reset();
          }
        }
      },
      asio::detached);
  while (state->running > 0) co_await state->done.Wait();
  state->linger_timer.cancel();
  co_return *result;
}

}  // namespace tunnelkit::ferro
