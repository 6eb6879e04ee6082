#include "transport/data_splice.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <memory>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "transport/socket_copy.hpp"
#include "tunnelkit/buffer_pool.hpp"
#include "tunnelkit/stream/kernel_pipe.hpp"

namespace tunnelkit::zlayer::transport {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;

namespace {

// What an idle direction reads into (small messages too); a read that fills it takes a pooled
// buffer. Every held connection keeps one of these per buffered direction; smaller (256 B)
// saved 0.75 KiB per side but split typical HTTP responses into two reads and a pool round
// trip (wss, 50 connections: fewer requests per second).
constexpr std::size_t kSmallRead = 1024;
constexpr std::size_t kPoolFree = 8;

std::shared_ptr<BufferPool>& BigBufferPool() {
  thread_local std::shared_ptr<BufferPool> pool = BufferPool::Create(kDataSpliceBuffer, kPoolFree);
  return pool;
}

BufferPool& BigBuffers() {
  return *BigBufferPool();
}

// The pool's idle chunks are every page touched (up to 8 x 256 KiB): after a bulk transfer, or
// every 64 spliced connections, a fresh pool replaces it, so that they go back to the system
// (chunks still in use return to the old pool, which frees everything once the last is back)
// rather than staying resident under a crowd of idle connections.
constexpr std::uint64_t kBulkBytes = 4 * 1024 * 1024;
constexpr int kSplicesPerPoolRenewal = 64;

void NoteSpliceEnded(std::uint64_t bytes) {
  thread_local int ended = 0;
  if (bytes < kBulkBytes && ++ended < kSplicesPerPoolRenewal) return;
  ended = 0;
  BigBufferPool() = BufferPool::Create(kDataSpliceBuffer, kPoolFree);
}

error_code Errno() {
  return error_code(errno, boost::system::system_category());
}

// A pipe for splice(2), borrowed per message from the thread's pool (tunnelkit::BorrowPipe): it
// goes back empty, or is closed if an error left bytes in it. With thousands of idle
// connections none holds one.
struct PipeLease {
  std::shared_ptr<KernelPipe> pipe = BorrowPipe();
  ~PipeLease() { ReturnPipe(std::move(pipe)); }
};

// Writes all of `bytes` (a frame header) to the socket, marked "more is coming".
asio::awaitable<error_code> SendHeader(tcp::socket& socket, const std::uint8_t* bytes,
                                       std::size_t n) {
  while (n > 0) {
    const ssize_t m = ::send(socket.native_handle(), bytes, n, MSG_MORE | MSG_NOSIGNAL);
    if (m > 0) {
      bytes += m;
      n -= static_cast<std::size_t>(m);
      continue;
    }
    if (m < 0 && errno == EINTR) continue;
    if (m < 0 && errno == EAGAIN) {
      error_code ec;
      co_await socket.async_wait(tcp::socket::wait_write,
                                 asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return ec;
      continue;
    }
    co_return Errno();
  }
  co_return error_code{};
}

// Server, plain ws: public socket -> data socket as data frames, payload by splice(2).
// Returns eof when the public side finished writing.
asio::awaitable<IoResult> SendFramesFrom(tcp::socket& source, tcp::socket& ws) {
  std::uint64_t total = 0;
  for (;;) {
    error_code ec;
    co_await source.async_wait(tcp::socket::wait_read,
                               asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return IoResult{ec, total};
    PipeLease lease;
    if (!lease.pipe) co_return IoResult{Errno(), total};
    const std::size_t want = std::min(lease.pipe->capacity(), codec::kMaxDataFramePayload);
    const KernelPipe::Move moved = lease.pipe->FillFrom(source.native_handle(), want);
    if (moved.status == KernelPipe::Status::kEnd) co_return IoResult{asio::error::eof, total};
    if (moved.status == KernelPipe::Status::kWouldBlock) continue;
    if (moved.status == KernelPipe::Status::kError) {
      co_return IoResult{error_code(moved.error, boost::system::system_category()), total};
    }
    const std::size_t n = moved.bytes;
    // FIN + binary, unmasked, length of kind byte + payload, then the kind byte.
    const std::uint64_t length = static_cast<std::uint64_t>(n) + 1;
    std::array<std::uint8_t, 11> header{};
    std::size_t h = 0;
    header[h++] = 0x82;
    if (length < 126) {
      header[h++] = static_cast<std::uint8_t>(length);
    } else if (length <= 0xffff) {
      header[h++] = 126;
      header[h++] = static_cast<std::uint8_t>(length >> 8);
      header[h++] = static_cast<std::uint8_t>(length);
    } else {
      header[h++] = 127;
      for (int shift = 56; shift >= 0; shift -= 8)
        header[h++] = static_cast<std::uint8_t>(length >> shift);
    }
    header[h++] = static_cast<std::uint8_t>(codec::DataFrameKind::kData);
    ec = co_await SendHeader(ws, header.data(), h);
    if (ec) co_return IoResult{ec, total};
    ec = co_await DrainExactly(*lease.pipe, ws, n);
    if (ec) co_return IoResult{ec, total};
    total += static_cast<std::uint64_t>(n);
  }
}

// Reads exactly `n` bytes; eof/reset if the socket ends first.
asio::awaitable<error_code> ReadExact(tcp::socket& socket, std::uint8_t* out, std::size_t n) {
  while (n > 0) {
    const ssize_t m = ::recv(socket.native_handle(), out, n, 0);
    if (m > 0) {
      out += m;
      n -= static_cast<std::size_t>(m);
      continue;
    }
    if (m == 0) co_return asio::error::connection_reset;  // no end-of-writes frame
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      error_code ec;
      co_await socket.async_wait(tcp::socket::wait_read,
                                 asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return ec;
      continue;
    }
    co_return Errno();
  }
  co_return error_code{};
}

// Agent, plain ws: data frames from the server -> local socket, payload by splice(2). Returns
// eof at the end-of-writes frame. Our server sends only whole, unmasked binary messages.
asio::awaitable<IoResult> ReceiveFramesTo(tcp::socket& ws, tcp::socket& target) {
  std::uint64_t total = 0;
  for (;;) {
    std::array<std::uint8_t, 9> header{};
    error_code ec = co_await ReadExact(ws, header.data(), 2);
    if (ec) co_return IoResult{ec, total};
    const bool fin = (header[0] & 0x80) != 0;
    const int opcode = header[0] & 0x0f;
    const bool masked = (header[1] & 0x80) != 0;
    std::uint64_t length = header[1] & 0x7f;
    if (!fin || opcode != 0x2 || masked || (header[0] & 0x70) != 0) {
      co_return IoResult{asio::error::invalid_argument, total};  // close, ping, fragments...
    }
    if (length == 0) continue;
    // The extended length (if any) and the kind byte in one read.
    const std::size_t extra = length == 126 ? 2 : length == 127 ? 8 : 0;
    ec = co_await ReadExact(ws, header.data(), extra + 1);
    if (ec) co_return IoResult{ec, total};
    if (extra > 0) {
      length = 0;
      for (std::size_t i = 0; i < extra; ++i) length = (length << 8) | header[i];
      if (length == 0) co_return IoResult{asio::error::invalid_argument, total};
    }
    if (length > kMaxDataMessage) co_return IoResult{asio::error::message_size, total};
    const std::uint8_t kind = header[extra];
    std::size_t remaining = static_cast<std::size_t>(length - 1);
    if (kind == static_cast<std::uint8_t>(codec::DataFrameKind::kFin)) {
      if (remaining != 0) co_return IoResult{asio::error::invalid_argument, total};
      co_return IoResult{asio::error::eof, total};
    }
    if (kind != static_cast<std::uint8_t>(codec::DataFrameKind::kData)) {
      co_return IoResult{asio::error::invalid_argument, total};
    }
    if (remaining == 0) continue;
    PipeLease lease;
    if (!lease.pipe) co_return IoResult{Errno(), total};
    while (remaining > 0) {
      const KernelPipe::Move moved =
          lease.pipe->FillFrom(ws.native_handle(), std::min(remaining, lease.pipe->capacity()));
      if (moved.status == KernelPipe::Status::kEnd) {
        co_return IoResult{asio::error::connection_reset, total};
      }
      if (moved.status == KernelPipe::Status::kError) {
        co_return IoResult{error_code(moved.error, boost::system::system_category()), total};
      }
      if (moved.status == KernelPipe::Status::kWouldBlock) {
        co_await ws.async_wait(tcp::socket::wait_read,
                               asio::redirect_error(asio::use_awaitable, ec));
        if (ec) co_return IoResult{ec, total};
        continue;
      }
      ec = co_await DrainExactly(*lease.pipe, target, moved.bytes);
      if (ec) co_return IoResult{ec, total};
      remaining -= moved.bytes;
      total += static_cast<std::uint64_t>(moved.bytes);
    }
  }
}

// Buffered directions. tcp -> data: CopySocketToStream (socket_copy.hpp).

// data -> tcp: a small buffer while messages are small, a pooled one while they fill it.
asio::awaitable<IoResult> CopyDataToTcp(DataStream& from, TcpStream& to) {
  std::uint64_t total = 0;
  std::unique_ptr<char[]> small;
  Chunk big;
  for (;;) {
    asio::mutable_buffer target;
    if (big) {
      target = asio::buffer(big.writable().data(), big.writable().size());
    } else {
      if (!small) small.reset(new char[kSmallRead]);
      target = asio::buffer(small.get(), kSmallRead);
    }
    const auto r = co_await from.ReadSome(target);
    if (r.ec) co_return IoResult{r.ec, total};
    const auto w = co_await to.Write(asio::buffer(target.data(), r.bytes));
    total += w.bytes;
    if (w.ec) co_return IoResult{w.ec, total};
    if (big && r.bytes < target.size()) {
      big = Chunk();
    } else if (!big && r.bytes == target.size()) {
      big = BigBuffers().Acquire();
    }
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

asio::awaitable<DataSpliceResult> SpliceData(TcpStream& tcp, DataStream& data, DataSide side) {
  auto ex = co_await asio::this_coro::executor;
  auto state = std::make_shared<SpliceState>(ex);
  DataSpliceResult result;
  tcp::socket* ws = data.socket()->plain_socket();
  error_code ignored;
  if (ws != nullptr) {
    ws->non_blocking(true, ignored);
    tcp.socket().non_blocking(true, ignored);
  }
  const bool zero_copy_out = ws != nullptr && side == DataSide::kServer;
  const bool zero_copy_in = ws != nullptr && side == DataSide::kAgent;

  auto finish = [state, &tcp, &data](std::uint64_t* counter) {
    return [state, counter, &tcp, &data](std::exception_ptr e, IoResult r) {
      *counter = r.bytes;
      if (e && !state->ec) state->ec = asio::error::fault;
      if (--state->running == 0) state->done.cancel();
      if (state->ec) {
        tcp.Reset();
        data.Reset();
      }
    };
  };
  // tcp -> data stream.
  auto tcp_to_data = [&, state]() -> asio::awaitable<IoResult> {
    IoResult r = zero_copy_out ? co_await SendFramesFrom(tcp.socket(), *ws)
                               : co_await CopySocketToStream(tcp, data, BigBuffers);
    if (r.ec == asio::error::eof) {
      const error_code ec = co_await data.ShutdownWrite();
      if (ec && !state->ec) state->ec = ec;
      r.ec = {};
    } else if (r.ec && !state->ec) {
      state->ec = r.ec;
    }
    co_return r;
  };
  // data stream -> tcp.
  auto data_to_tcp = [&, state]() -> asio::awaitable<IoResult> {
    IoResult r = zero_copy_in ? co_await ReceiveFramesTo(*ws, tcp.socket())
                              : co_await CopyDataToTcp(data, tcp);
    if (r.ec == asio::error::eof) {
      if (zero_copy_in) data.MarkReadEof();
      const error_code ec = co_await tcp.ShutdownWrite();
      if (ec && !state->ec) state->ec = ec;
      r.ec = {};
    } else if (r.ec && !state->ec) {
      state->ec = r.ec;
    }
    co_return r;
  };
  // One direction runs in a coroutine of its own, the other in this one: a held connection
  // keeps one spawned coroutine (frames and thread state) rather than two.
  asio::co_spawn(ex, data_to_tcp(), finish(&result.totals.b_to_a));
  {
    IoResult r;
    std::exception_ptr failure;
    try {
      r = co_await tcp_to_data();
    } catch (...) {
      failure = std::current_exception();
    }
    finish (&result.totals.a_to_b)(failure, r);
  }
  while (state->running > 0) {
    error_code ec;
    co_await state->done.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  result.totals.ec = state->ec;
  result.clean = !state->ec && data.finished_cleanly();
  NoteSpliceEnded(result.totals.a_to_b + result.totals.b_to_a);
  co_return result;
}

}  // namespace tunnelkit::zlayer::transport
