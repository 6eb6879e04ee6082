#include <atomic>

#include <boost/asio/error.hpp>

#include "tunnelkit/mux/session.hpp"

namespace tunnelkit::mux {
namespace asio = boost::asio;

namespace {
std::atomic<std::size_t> live_streams{0};  // for leak and churn tests
}  // namespace

std::size_t MuxStream::live() {
  return live_streams.load(std::memory_order_relaxed);
}

struct MuxStream::Waiter final : StreamWaiter {
  explicit Waiter(const asio::any_io_executor& executor) : read(executor), write(executor) {}
  void WakeReader() override { read.Notify(); }
  void WakeWriter() override { write.Notify(); }
  WakeSignal read;
  WakeSignal write;
};

MuxStream::MuxStream(std::shared_ptr<MuxSession> session, std::shared_ptr<StreamState> state)
    : session_(std::move(session)),
      state_(std::move(state)),
      waiter_(std::make_shared<Waiter>(session_->executor_)) {
  state_->waiter = waiter_;
  live_streams.fetch_add(1, std::memory_order_relaxed);
}

MuxStream::~MuxStream() {
  live_streams.fetch_sub(1, std::memory_order_relaxed);
  session_->engine_->Release(*state_);
}

asio::any_io_executor MuxStream::get_executor() {
  return session_->executor_;
}

boost::system::error_code MuxStream::ErrorCode() const {
  switch (state_->error) {
    case StreamError::kNone:
      return {};
    case StreamError::kPeerReset:
      return asio::error::connection_reset;
    case StreamError::kLocalReset:
      return asio::error::operation_aborted;
    case StreamError::kSessionClosed:
      return asio::error::connection_aborted;
  }
  return asio::error::connection_aborted;
}

asio::awaitable<IoResult> MuxStream::ReadSome(asio::mutable_buffer buffer) {
  if (buffer.size() == 0) co_return IoResult{};
  const std::span<std::uint8_t> out(static_cast<std::uint8_t*>(buffer.data()), buffer.size());
  while (true) {
    // After a session failure, a stream the peer had finished stays readable to its end.
    const bool complete = state_->error == StreamError::kSessionClosed && state_->recv_fin;
    if (state_->error != StreamError::kNone && !complete) co_return IoResult{ErrorCode(), 0};
    if (std::size_t n = session_->engine_->Read(*state_, out); n > 0) co_return IoResult{{}, n};
    if (state_->recv_fin) co_return IoResult{asio::error::eof, 0};
    co_await waiter_->read.Wait();
  }
}

asio::awaitable<IoResult> MuxStream::Write(asio::const_buffer buffer) {
  const std::span<const std::uint8_t> bytes(static_cast<const std::uint8_t*>(buffer.data()),
                                            buffer.size());
  std::size_t written = 0;
  while (written < bytes.size()) {
    if (state_->error != StreamError::kNone) co_return IoResult{ErrorCode(), written};
    if (state_->write_closed) co_return IoResult{asio::error::broken_pipe, written};
    const std::size_t n = session_->engine_->Write(*state_, bytes.subspan(written));
    if (n == 0) {
      co_await waiter_->write.Wait();
    } else {
      written += n;
    }
  }
  co_return IoResult{{}, written};
}

asio::awaitable<boost::system::error_code> MuxStream::ShutdownWrite() {
  if (state_->error != StreamError::kNone) co_return ErrorCode();
  session_->engine_->ShutdownWrite(*state_);
  co_return boost::system::error_code{};
}

void MuxStream::Reset() {
  Reset(reset_code::kCancelled, "reset by local user");
}

void MuxStream::Reset(std::uint32_t code, std::string_view reason) {
  session_->engine_->Reset(*state_, code, reason);
}

std::string MuxStream::Describe() const {
  return session_->config().label + " stream " + std::to_string(state_->id);
}

}  // namespace tunnelkit::mux
