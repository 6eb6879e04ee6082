#include "tunnelkit/mux/session.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <stdexcept>

#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace tunnelkit::mux {
namespace asio = boost::asio;

namespace {
// Read at least this much from the transport per ReadSome.
constexpr std::size_t kReadSize = 64 * 1024;
std::atomic<std::size_t> live_sessions{0};  // for leak and churn tests
}  // namespace

std::string MuxConfig::Validate() const {
  if (stream_window == 0) return "stream_window: must be > 0";
  if (max_streams == 0) return "max_streams: must be > 0";
  if (max_batch_frames == 0) return "max_batch_frames: must be > 0";
  if (max_batch_bytes == 0) return "max_batch_bytes: must be > 0";
  if (chunk_size < 64) return "chunk_size: must be >= 64";
  if (max_send_queued == 0) return "max_send_queued: must be > 0";
  if (max_frame_size < 64) return "max_frame_size: must be >= 64";
  return {};
}

std::shared_ptr<MuxSession> MuxSession::Create(std::unique_ptr<Stream> transport,
                                               std::unique_ptr<FrameCodec> codec, MuxConfig config,
                                               std::shared_ptr<spdlog::logger> logger) {
  if (!transport || !codec) throw std::invalid_argument("MuxSession: transport and codec needed");
  if (std::string error = config.Validate(); !error.empty()) {
    throw std::invalid_argument("mux config: " + error);
  }
  return std::shared_ptr<MuxSession>(
      new MuxSession(std::move(transport), std::move(codec), std::move(config), std::move(logger)));
}

MuxSession::MuxSession(std::unique_ptr<Stream> transport, std::unique_ptr<FrameCodec> codec,
                       MuxConfig config, std::shared_ptr<spdlog::logger> logger)
    : executor_(transport->get_executor()),
      transport_(std::move(transport)),
      codec_(std::move(codec)),
      logger_(logger ? std::move(logger) : spdlog::default_logger()),
      engine_(new MuxEngine(config, *codec_, static_cast<EngineObserver&>(*this))),
      writer_wake_(executor_),
      reader_wake_(executor_),
      accept_wake_(executor_),
      closed_wake_(executor_),
      flushed_wake_(executor_) {
  live_sessions.fetch_add(1, std::memory_order_relaxed);
}

MuxSession::~MuxSession() {
  live_sessions.fetch_sub(1, std::memory_order_relaxed);
}

std::size_t MuxSession::live() {
  return live_sessions.load(std::memory_order_relaxed);
}

void MuxSession::Start(std::vector<std::uint8_t> already_received) {
  if (started_) return;
  started_ = true;
  input_ = std::move(already_received);
  input_begin_ = 0;
  input_end_ = input_.size();
  input_.resize(std::max(input_.size() * 2, kReadSize * 2));
  asio::co_spawn(executor_, ReaderLoop(shared_from_this()), asio::detached);
  asio::co_spawn(executor_, WriterLoop(shared_from_this()), asio::detached);
}

bool MuxSession::DecodeBuffered() {
  while (!closed_ && !engine_->ReadPaused() && input_end_ > input_begin_) {
    const std::span<const std::uint8_t> pending(input_.data() + input_begin_,
                                                input_end_ - input_begin_);
    DecodeResult result = codec_->Decode(pending);
    switch (result.status) {
      case DecodeResult::Status::kNeedMore:
        if (pending.size() > config().max_frame_size) {
          Close("frame larger than " + std::to_string(config().max_frame_size) + " bytes");
          return false;
        }
        return true;
      case DecodeResult::Status::kError:
        Close("codec error: " + result.error);
        return false;
      case DecodeResult::Status::kFrame:
        if (result.consumed == 0 || result.consumed > pending.size()) {
          Close("codec error: decoder consumed " + std::to_string(result.consumed) + " of " +
                std::to_string(pending.size()) + " bytes");
          return false;
        }
        input_begin_ += result.consumed;
        if (!engine_->OnFrame(result.frame)) {
          Close("protocol error: " + engine_->failure());
          return false;
        }
        break;
    }
  }
  return !closed_;
}

asio::awaitable<void> MuxSession::ReaderLoop([[maybe_unused]] std::shared_ptr<MuxSession> self) {
  try {
    while (!closed_) {
      if (!DecodeBuffered()) break;
      if (engine_->ReadPaused()) {
        co_await reader_wake_.Wait();
        continue;
      }
      // Make room for the next read: move the partial frame to the front, grow if needed.
      if (input_begin_ == input_end_) {
        input_begin_ = input_end_ = 0;
      } else if (input_.size() - input_end_ < kReadSize) {
        const std::size_t pending = input_end_ - input_begin_;
        std::memmove(input_.data(), input_.data() + input_begin_, pending);
        input_begin_ = 0;
        input_end_ = pending;
        // Geometric growth: a 16 MiB frame must not cost a reallocation per read.
        if (input_.size() - input_end_ < kReadSize) {
          input_.resize(std::max(input_end_ + kReadSize, input_.size() * 2));
        }
      }
      IoResult r = co_await transport_->ReadSome(
          asio::buffer(input_.data() + input_end_, input_.size() - input_end_));
      if (r.ec) {
        if (shutting_down_) {
          Close("shutdown");
        } else if (r.ec == asio::error::eof) {
          Close("peer closed the transport");
        } else {
          Close("transport read failed: " + r.ec.message());
        }
        break;
      }
      input_end_ += r.bytes;
      // A large partial frame made the buffer grow; shrink it back once it is drained.
      if (input_begin_ == input_end_ && input_.size() > 4 * kReadSize) {
        input_.resize(2 * kReadSize);
        input_.shrink_to_fit();
        input_begin_ = input_end_ = 0;
      }
    }
  } catch (const std::exception& e) {
    Close(std::string("reader failed: ") + e.what());
  }
}

asio::awaitable<void> MuxSession::WriterLoop([[maybe_unused]] std::shared_ptr<MuxSession> self) {
  try {
    while (!closed_) {
      if (!engine_->HasOutput() || transport_shut_) {
        flushed_wake_.Notify();
        co_await writer_wake_.Wait();
        continue;
      }
      batch_.clear();
      if (!engine_->FillBatch(batch_)) {
        Close("protocol error: " + engine_->failure());
        break;
      }
      if (batch_.empty()) continue;
      writer_busy_ = true;
      IoResult r = co_await transport_->Write(asio::buffer(batch_));
      writer_busy_ = false;
      ++transport_writes_;
      if (r.ec) {
        Close("transport write failed: " + r.ec.message());
        break;
      }
      if (batch_.capacity() > 4 * config().max_batch_bytes) {
        batch_.clear();
        batch_.shrink_to_fit();
      }
    }
  } catch (const std::exception& e) {
    Close(std::string("writer failed: ") + e.what());
  }
  flushed_wake_.Notify();
}

void MuxSession::Close(const std::string& reason) {
  if (closed_) return;
  closed_ = true;
  close_reason_ = reason;
  logger_->info("{} session closed: {}", config().label, reason);
  engine_->Fail(reason);
  transport_->Reset();
  writer_wake_.Notify();
  reader_wake_.Notify();
  accept_wake_.Notify();
  closed_wake_.Notify();
  flushed_wake_.Notify();
  if (closed_handler_) {
    asio::post(executor_, [handler = std::move(closed_handler_), reason] { handler(reason); });
    closed_handler_ = nullptr;
  }
}

asio::awaitable<void> MuxSession::Shutdown(std::chrono::milliseconds grace) {
  auto self = shared_from_this();
  if (closed_) co_return;
  shutting_down_ = true;
  auto expired = std::make_shared<bool>(false);
  asio::steady_timer deadline(executor_);
  deadline.expires_after(grace);
  // The handler owns what it touches: it may run after this coroutine is gone.
  deadline.async_wait([self, expired](boost::system::error_code ec) {
    if (!ec) {
      *expired = true;
      self->flushed_wake_.Notify();
      self->closed_wake_.Notify();
    }
  });
  // 1. Everything queued goes out.
  while (!closed_ && !*expired && (engine_->HasOutput() || writer_busy_)) {
    co_await flushed_wake_.Wait();
  }
  // 2. Half-close the transport (not a reset, which could discard data in flight) and give
  //    the peer the rest of the grace period to read it and close its end.
  if (!closed_ && !*expired) {
    transport_shut_ = true;
    writer_wake_.Notify();
    co_await transport_->ShutdownWrite();
    while (!closed_ && !*expired) co_await closed_wake_.Wait();
  }
  deadline.cancel();
  Close(*expired ? "shutdown grace period expired" : "shutdown");
}

asio::awaitable<void> MuxSession::WaitClosed() {
  auto self = shared_from_this();
  while (!closed_) co_await closed_wake_.Wait();
}

std::shared_ptr<MuxStream> MuxSession::MakeHandle(std::shared_ptr<StreamState> state) {
  return std::shared_ptr<MuxStream>(new MuxStream(shared_from_this(), std::move(state)));
}

std::shared_ptr<MuxStream> MuxSession::Open(Priority priority,
                                            std::span<const std::uint8_t> metadata,
                                            boost::system::error_code& ec) {
  ec = {};
  if (closed_) {
    ec = asio::error::connection_aborted;
    return nullptr;
  }
  std::string error;
  auto state = engine_->Open(priority, metadata, &error);
  if (!state) {
    logger_->debug("{} open failed: {}", config().label, error);
    ec = asio::error::no_buffer_space;
    return nullptr;
  }
  return MakeHandle(std::move(state));
}

asio::awaitable<std::shared_ptr<MuxStream>> MuxSession::Accept() {
  auto self = shared_from_this();
  while (true) {
    if (auto state = engine_->PopIncoming()) co_return MakeHandle(std::move(state));
    if (closed_) co_return nullptr;
    co_await accept_wake_.Wait();
  }
}

void MuxSession::SendControl(std::span<const std::uint8_t> payload, Priority priority) {
  engine_->SendControl(payload, priority);
}

void MuxSession::SetControlHandler(std::function<void(const Frame&)> handler) {
  control_handler_ = std::move(handler);
}

void MuxSession::SetClosedHandler(std::function<void(const std::string&)> handler) {
  if (closed_) {
    asio::post(executor_,
               [handler = std::move(handler), reason = close_reason_] { handler(reason); });
    return;
  }
  closed_handler_ = std::move(handler);
}

void MuxSession::OnControl(const Frame& frame) {
  if (control_handler_) {
    control_handler_(frame);
  } else {
    logger_->debug("{} control frame of {} bytes ignored (no handler)", config().label,
                   frame.payload.size());
  }
}

}  // namespace tunnelkit::mux
