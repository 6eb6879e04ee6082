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

#include "tunnelkit/buffer_pool.hpp"

namespace tunnelkit::zlayer::transport {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;

namespace {

constexpr std::size_t kSmallRead = 1024;
constexpr std::size_t kPoolFree = 8;

BufferPool& BigBuffers() {
  thread_local std::shared_ptr<BufferPool> pool = BufferPool::Create(kDataSpliceBuffer, kPoolFree);
  return *pool;
}

// A pipe for splice(2), borrowed per message: it goes back to the thread's pool empty (or is
// closed if an error left bytes in it). With thousands of idle connections none holds one.
struct Pipe {
  int read_fd = -1;
  int write_fd = -1;
  std::size_t capacity = 0;
};

class PipePool {
 public:
  ~PipePool() {
    for (auto& p : free_) Close(p);
  }
  bool Acquire(Pipe& pipe) {
    if (!free_.empty()) {
      pipe = free_.back();
      free_.pop_back();
      return true;
    }
    int fds[2];
    if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return false;
    pipe.read_fd = fds[0];
    pipe.write_fd = fds[1];
    ::fcntl(pipe.write_fd, F_SETPIPE_SZ, static_cast<int>(codec::kMaxDataFramePayload));
    const int size = ::fcntl(pipe.write_fd, F_GETPIPE_SZ);
    pipe.capacity = size > 0 ? static_cast<std::size_t>(size) : 65536;
    return true;
  }
  void Release(Pipe& pipe, bool empty) {
    if (pipe.read_fd < 0) return;
    if (empty && free_.size() < kPoolFree) {
      free_.push_back(pipe);
    } else {
      Close(pipe);
    }
    pipe = Pipe{};
  }

 private:
  static void Close(Pipe& p) {
    ::close(p.read_fd);
    ::close(p.write_fd);
  }
  std::vector<Pipe> free_;
};

PipePool& Pipes() {
  thread_local PipePool pool;
  return pool;
}

struct PipeLease {
  Pipe pipe;
  bool empty = true;
  ~PipeLease() { Pipes().Release(pipe, empty); }
};

error_code Errno() {
  return error_code(errno, boost::system::system_category());
}

// Moves exactly `n` bytes from the pipe to `socket`.
asio::awaitable<error_code> DrainPipe(Pipe& pipe, tcp::socket& socket, std::size_t n) {
  while (n > 0) {
    const ssize_t m = ::splice(pipe.read_fd, nullptr, socket.native_handle(), nullptr, n,
                               SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (m > 0) {
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
    co_return m < 0 ? Errno() : error_code(asio::error::broken_pipe);
  }
  co_return error_code{};
}

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
    if (!Pipes().Acquire(lease.pipe)) co_return IoResult{Errno(), total};
    const std::size_t want = std::min(lease.pipe.capacity, codec::kMaxDataFramePayload);
    const ssize_t n = ::splice(source.native_handle(), nullptr, lease.pipe.write_fd, nullptr, want,
                               SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n == 0) co_return IoResult{asio::error::eof, total};
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      co_return IoResult{Errno(), total};
    }
    lease.empty = false;
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
    ec = co_await DrainPipe(lease.pipe, ws, static_cast<std::size_t>(n));
    if (ec) co_return IoResult{ec, total};
    lease.empty = true;
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
    if (!Pipes().Acquire(lease.pipe)) co_return IoResult{Errno(), total};
    while (remaining > 0) {
      const ssize_t m =
          ::splice(ws.native_handle(), nullptr, lease.pipe.write_fd, nullptr,
                   std::min(remaining, lease.pipe.capacity), SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (m == 0) co_return IoResult{asio::error::connection_reset, total};
      if (m < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) {
          co_await ws.async_wait(tcp::socket::wait_read,
                                 asio::redirect_error(asio::use_awaitable, ec));
          if (ec) co_return IoResult{ec, total};
          continue;
        }
        co_return IoResult{Errno(), total};
      }
      lease.empty = false;
      ec = co_await DrainPipe(lease.pipe, target, static_cast<std::size_t>(m));
      if (ec) co_return IoResult{ec, total};
      lease.empty = true;
      remaining -= static_cast<std::size_t>(m);
      total += static_cast<std::uint64_t>(m);
    }
  }
}

// Buffered directions. tcp -> data: waits until the socket is readable before taking a pooled
// buffer, which goes back after a short read.
asio::awaitable<IoResult> CopyTcpToData(TcpStream& from, DataStream& to) {
  std::uint64_t total = 0;
  Chunk big;
  for (;;) {
    if (!big) {
      error_code ec;
      co_await from.socket().async_wait(tcp::socket::wait_read,
                                        asio::redirect_error(asio::use_awaitable, ec));
      big = BigBuffers().Acquire();
    }
    auto space = big.writable();
    const auto r = co_await from.ReadSome(asio::buffer(space.data(), space.size()));
    if (r.ec) co_return IoResult{r.ec, total};
    const auto w = co_await to.Write(asio::buffer(space.data(), r.bytes));
    total += w.bytes;
    if (w.ec) co_return IoResult{w.ec, total};
    if (r.bytes < space.size()) big = Chunk();
  }
}

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
  asio::co_spawn(
      ex,
      [&, state]() -> asio::awaitable<IoResult> {
        IoResult r = zero_copy_out ? co_await SendFramesFrom(tcp.socket(), *ws)
                                   : co_await CopyTcpToData(tcp, data);
        if (r.ec == asio::error::eof) {
          const error_code ec = co_await data.ShutdownWrite();
          if (ec && !state->ec) state->ec = ec;
          r.ec = {};
        } else if (r.ec && !state->ec) {
          state->ec = r.ec;
        }
        co_return r;
      },
      finish(&result.totals.a_to_b));
  // data stream -> tcp.
  asio::co_spawn(
      ex,
      [&, state]() -> asio::awaitable<IoResult> {
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
      },
      finish(&result.totals.b_to_a));
  while (state->running > 0) {
    error_code ec;
    co_await state->done.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  result.totals.ec = state->ec;
  result.clean = !state->ec && data.finished_cleanly();
  co_return result;
}

}  // namespace tunnelkit::zlayer::transport
