#include "tunnelkit/mux/memory_transport.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

#include <boost/asio/error.hpp>

#include "tunnelkit/mux/wake_signal.hpp"

namespace tunnelkit::mux {
namespace asio = boost::asio;

// One direction: a ring buffer plus the signals of its reader and writer.
struct MemoryPipe {
  MemoryPipe(const asio::any_io_executor& executor, std::size_t capacity)
      : ring(capacity), readable(executor), writable(executor) {}

  std::size_t Put(const std::uint8_t* data, std::size_t n) {
    n = std::min(n, ring.size() - size);
    std::size_t tail = (head + size) % ring.size();
    const std::size_t first = std::min(n, ring.size() - tail);
    std::memcpy(ring.data() + tail, data, first);
    std::memcpy(ring.data(), data + first, n - first);
    size += n;
    return n;
  }
  std::size_t Take(std::uint8_t* data, std::size_t n) {
    n = std::min(n, size);
    const std::size_t first = std::min(n, ring.size() - head);
    std::memcpy(data, ring.data() + head, first);
    std::memcpy(data + first, ring.data(), n - first);
    head = (head + n) % ring.size();
    size -= n;
    return n;
  }

  std::vector<std::uint8_t> ring;
  std::size_t head = 0;
  std::size_t size = 0;
  bool eof = false;    // the writer shut down
  bool reset = false;  // either end reset
  WakeSignal readable;
  WakeSignal writable;
};

std::pair<std::unique_ptr<MemoryTransport>, std::unique_ptr<MemoryTransport>> MemoryTransport::Pair(
    const asio::any_io_executor& executor, std::size_t capacity) {
  capacity = std::max<std::size_t>(capacity, 1);
  auto a_to_b = std::make_shared<MemoryPipe>(executor, capacity);
  auto b_to_a = std::make_shared<MemoryPipe>(executor, capacity);
  std::unique_ptr<MemoryTransport> a(new MemoryTransport(executor, b_to_a, a_to_b, "a"));
  std::unique_ptr<MemoryTransport> b(new MemoryTransport(executor, a_to_b, b_to_a, "b"));
  return {std::move(a), std::move(b)};
}

MemoryTransport::MemoryTransport(asio::any_io_executor executor, std::shared_ptr<MemoryPipe> in,
                                 std::shared_ptr<MemoryPipe> out, std::string name)
    : executor_(std::move(executor)),
      in_(std::move(in)),
      out_(std::move(out)),
      name_(std::move(name)) {}

// Like closing a socket: the peer sees the connection reset.
MemoryTransport::~MemoryTransport() {
  Reset();
}

std::size_t MemoryTransport::queued_outbound() const {
  return out_->size;
}

asio::awaitable<IoResult> MemoryTransport::ReadSome(asio::mutable_buffer buffer) {
  if (buffer.size() == 0) co_return IoResult{};
  while (true) {
    if (reset_) co_return IoResult{asio::error::operation_aborted, 0};
    if (in_->reset) co_return IoResult{asio::error::connection_reset, 0};
    if (in_->size > 0) {
      const std::size_t n = in_->Take(static_cast<std::uint8_t*>(buffer.data()), buffer.size());
      in_->writable.Notify();
      co_return IoResult{{}, n};
    }
    if (in_->eof) co_return IoResult{asio::error::eof, 0};
    co_await in_->readable.Wait();
  }
}

asio::awaitable<IoResult> MemoryTransport::Write(asio::const_buffer buffer) {
  const auto* data = static_cast<const std::uint8_t*>(buffer.data());
  std::size_t written = 0;
  while (written < buffer.size()) {
    if (reset_) co_return IoResult{asio::error::operation_aborted, written};
    if (out_->reset) co_return IoResult{asio::error::connection_reset, written};
    if (out_->eof) co_return IoResult{asio::error::broken_pipe, written};
    const std::size_t n = out_->Put(data + written, buffer.size() - written);
    if (n > 0) {
      written += n;
      out_->readable.Notify();
    } else {
      co_await out_->writable.Wait();
    }
  }
  co_return IoResult{{}, written};
}

asio::awaitable<boost::system::error_code> MemoryTransport::ShutdownWrite() {
  if (reset_ || out_->reset) co_return asio::error::connection_reset;
  out_->eof = true;
  out_->readable.Notify();
  co_return boost::system::error_code{};
}

void MemoryTransport::Reset() {
  if (reset_) return;
  reset_ = true;
  for (MemoryPipe* pipe : {in_.get(), out_.get()}) {
    pipe->reset = true;
    pipe->size = 0;
    pipe->readable.Notify();
    pipe->writable.Notify();
  }
}

}  // namespace tunnelkit::mux
