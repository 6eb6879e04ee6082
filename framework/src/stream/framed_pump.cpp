#include "framed_pump.hpp"

#include <algorithm>

#include <boost/asio/error.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "tunnelkit/stream/framed_stream.hpp"
#include "tunnelkit/stream/kernel_pipe.hpp"

namespace tunnelkit::detail {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

// The first read toward a framed stream; it doubles while reads fill it, up to one frame, so
// that small exchanges take small buffers.
constexpr std::size_t kFirstRead = 4 * 1024;

// The kernel path of one direction: TCP socket -> stream of a plain-TCP session, or the
// reverse. Taken once the direction proves bulky (a full frame in one read), so the thousands
// of small, idle connections hold no pipes.
class KernelRoute {
 public:
  KernelRoute(Stream& from, Stream& to)
      : from_tcp_(from.plain_tcp_socket()),
        to_tcp_(to.plain_tcp_socket()),
        from_framed_(from.framed()),
        to_framed_(to.framed()),
        outbound_(from_tcp_ && to_framed_ && to_framed_->can_splice()),
        inbound_(from_framed_ && to_tcp_ && from_framed_->can_splice()) {}

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
    if (!attached_) attached_ = from_framed_->AttachSink(pipe_);
    return attached_;
  }
  asio::awaitable<IoResult> Move() {
    if (outbound_) co_return co_await to_framed_->SpliceFrom(*from_tcp_, pipe_);
    co_return co_await from_framed_->SpliceTo(*to_tcp_);
  }

 private:
  tcp::socket* from_tcp_;
  tcp::socket* to_tcp_;
  FramedStream* from_framed_;
  FramedStream* to_framed_;
  bool outbound_;
  bool inbound_;
  std::shared_ptr<KernelPipe> pipe_;
  bool attached_ = false;
  bool failed_ = false;
};

// Moves one payload's worth from `from` to `to` through memory. The result's error is the
// read's eof, or any failure of either side. A framed stream's payloads are forwarded as they
// arrived, and bytes for one are read straight into the frame that carries them. The socket
// and framed-stream operations are made here, not through Stream calls: each of those is a
// coroutine frame (an allocation), and a small request/response exchange made a dozen of them
// per message.
asio::awaitable<IoResult> CopySome(Stream& from, Stream& to, KernelRoute& route,
                                   std::size_t& next_read) {
  tcp::socket* from_tcp = from.plain_tcp_socket();
  tcp::socket* to_tcp = to.plain_tcp_socket();
  if (FramedStream* framed = from.framed()) {
    if (!framed->readable()) co_await framed->WaitReadable();
    UninitBytes piece;
    IoResult r;
    if (!framed->TryReadPiece(piece, r)) r = co_await framed->ReadPiece(piece);
    if (r.ec) co_return r;
    IoResult w;
    if (to_tcp) {
      w.bytes = co_await asio::async_write(*to_tcp, asio::buffer(piece),
                                           asio::redirect_error(asio::use_awaitable, w.ec));
    } else {
      w = co_await to.Write(asio::buffer(piece));
    }
    route.Consider(r.bytes, framed->max_frame_payload());
    co_return w;
  }
  FramedStream* framed = to.framed();
  // Waits until the socket has something (bytes, end of stream or an error), so that a buffer
  // is taken only when there is something to put in it.
  if (from_tcp) {
    boost::system::error_code ignored;
    co_await from_tcp->async_wait(tcp::socket::wait_read,
                                  asio::redirect_error(asio::use_awaitable, ignored));
  }
  const std::size_t room = framed->frame_header_room();
  UninitBytes frame(room + next_read);  // not zeroed
  const auto space = asio::buffer(frame.data() + room, next_read);
  IoResult r;
  if (from_tcp) {
    r.bytes =
        co_await from_tcp->async_read_some(space, asio::redirect_error(asio::use_awaitable, r.ec));
  } else {
    r = co_await from.ReadSome(space);
  }
  if (r.ec) co_return r;
  const bool filled = r.bytes == next_read;
  frame.resize(room + r.bytes);
  IoResult w;
  if (!framed->TryWriteFrame(frame, w)) w = co_await framed->WriteFrame(std::move(frame));
  route.Consider(r.bytes, framed->max_frame_payload());
  if (filled) next_read = std::min(next_read * 2, framed->max_frame_payload());
  co_return w;
}

}  // namespace

asio::awaitable<std::uint64_t> PumpFramed(Stream& from, Stream& to,
                                          std::shared_ptr<SpliceFailure> failure) {
  KernelRoute route(from, to);
  std::size_t next_read = kFirstRead;
  std::uint64_t total = 0;
  for (;;) {
    IoResult r =
        route.Active() ? co_await route.Move() : co_await CopySome(from, to, route, next_read);
    total += r.bytes;
    if (r.ec == asio::error::eof) {
      co_await to.ShutdownWrite();
      break;
    }
    if (r.ec || failure->ec) {
      if (!failure->ec) failure->ec = r.ec;
      from.Reset();
      to.Reset();
      break;
    }
  }
  co_return total;
}

}  // namespace tunnelkit::detail
