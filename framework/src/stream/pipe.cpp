#include "tunnelkit/stream/pipe.hpp"

#include <algorithm>
#include <cstring>
#include <deque>

#include <boost/asio/error.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace tunnelkit {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {

// One direction of the pipe. Readers and writers park on a timer that never expires by
// itself; the other side cancels it to wake them.
struct Channel {
  explicit Channel(asio::any_io_executor ex)
      : readable(ex, asio::steady_timer::time_point::max()),
        writable(ex, asio::steady_timer::time_point::max()) {}
  std::deque<char> data;
  bool finished = false;  // writer half-closed
  bool reset = false;
  asio::steady_timer readable;
  asio::steady_timer writable;
};

struct PipeState {
  explicit PipeState(asio::any_io_executor ex, std::size_t cap)
      : executor(ex), capacity(cap), channels{Channel(ex), Channel(ex)} {}
  asio::any_io_executor executor;
  std::size_t capacity;
  Channel channels[2];  // [0]: end 0 writes, end 1 reads; [1]: the reverse

  void ResetAll() {
    for (auto& c : channels) {
      c.reset = true;
      c.readable.cancel();
      c.writable.cancel();
    }
  }
};

class PipeEnd final : public Stream {
 public:
  PipeEnd(std::shared_ptr<PipeState> state, int side, std::string name)
      : state_(std::move(state)), side_(side), name_(std::move(name)) {}
  ~PipeEnd() override { state_->ResetAll(); }

  asio::any_io_executor get_executor() override { return state_->executor; }

  bool TryReadSome(asio::mutable_buffer buffer, IoResult& result) override {
    Channel& c = state_->channels[1 - side_];
    if (c.reset) {
      result = IoResult{asio::error::connection_reset, 0};
    } else if (!c.data.empty()) {
      std::size_t n = std::min(buffer.size(), c.data.size());
      std::copy_n(c.data.begin(), n, static_cast<char*>(buffer.data()));
      c.data.erase(c.data.begin(), c.data.begin() + static_cast<std::ptrdiff_t>(n));
      c.writable.cancel();
      result = IoResult{{}, n};
    } else if (c.finished) {
      result = IoResult{asio::error::eof, 0};
    } else {
      return false;
    }
    return true;
  }

  asio::awaitable<IoResult> ReadSome(asio::mutable_buffer buffer) override {
    Channel& c = state_->channels[1 - side_];
    auto keep = state_;
    for (;;) {
      IoResult r;
      if (TryReadSome(buffer, r)) co_return r;
      if (buffer.size() == 0) co_return IoResult{};
      error_code ec;
      co_await c.readable.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
  }

  bool TryWrite(asio::const_buffer buffer, IoResult& result) override {
    Channel& c = state_->channels[side_];
    if (c.reset || c.finished || c.data.size() + buffer.size() > state_->capacity) return false;
    const char* p = static_cast<const char*>(buffer.data());
    c.data.insert(c.data.end(), p, p + buffer.size());
    c.readable.cancel();
    result = IoResult{{}, buffer.size()};
    return true;
  }

  asio::awaitable<IoResult> Write(asio::const_buffer buffer) override {
    Channel& c = state_->channels[side_];
    auto keep = state_;
    const char* p = static_cast<const char*>(buffer.data());
    std::size_t left = buffer.size();
    std::size_t written = 0;
    while (left > 0) {
      if (c.reset) co_return IoResult{asio::error::connection_reset, written};
      if (c.finished) co_return IoResult{asio::error::shut_down, written};
      std::size_t room = state_->capacity > c.data.size() ? state_->capacity - c.data.size() : 0;
      if (room == 0) {
        error_code ec;
        co_await c.writable.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        continue;
      }
      std::size_t n = std::min(room, left);
      c.data.insert(c.data.end(), p, p + n);
      p += n;
      left -= n;
      written += n;
      c.readable.cancel();
    }
    co_return IoResult{{}, written};
  }

  asio::awaitable<error_code> ShutdownWrite() override {
    Channel& c = state_->channels[side_];
    if (c.reset) co_return asio::error::connection_reset;
    c.finished = true;
    c.readable.cancel();
    co_return error_code{};
  }

  void Reset() override { state_->ResetAll(); }

  std::string Describe() const override { return name_ + (side_ == 0 ? " end 0" : " end 1"); }

 private:
  std::shared_ptr<PipeState> state_;
  int side_;
  std::string name_;
};

}  // namespace

std::pair<std::unique_ptr<Stream>, std::unique_ptr<Stream>> MakeStreamPair(
    asio::any_io_executor executor, std::size_t capacity, const std::string& name) {
  auto state = std::make_shared<PipeState>(executor, std::max<std::size_t>(capacity, 1));
  return {std::make_unique<PipeEnd>(state, 0, name), std::make_unique<PipeEnd>(state, 1, name)};
}

}  // namespace tunnelkit
