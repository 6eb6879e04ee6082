// MuxSession: many Streams over one ordered byte transport (a tunnelkit::Stream: TCP, TLS, a
// WebSocket channel, or MemoryTransport in tests). The wire format comes from a FrameCodec.
//
// One reader coroutine decodes frames and feeds the engine; one writer coroutine drains the
// engine's priority queues, many frames per transport write. Everything runs on the transport's
// executor (one thread); the session is not thread-safe.
//
// Lifetime: create with Create(), call Start(). The session runs until Close(), a transport
// error, the peer closing the transport, or a protocol/codec error (logged with its reason).
// Closing fails every stream's pending operations. The reader and writer coroutines hold the
// session alive while they run; they both end promptly after Close().
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/error_code.hpp>

#include "tunnelkit/mux/config.hpp"
#include "tunnelkit/mux/engine.hpp"
#include "tunnelkit/mux/frame_codec.hpp"
#include "tunnelkit/mux/wake_signal.hpp"
#include "tunnelkit/stream.hpp"

namespace spdlog {
class logger;
}

namespace tunnelkit::mux {

class MuxSession;

// One multiplexed stream; a tunnelkit::Stream, so proxy code works on it unchanged.
// Errors: reads after the peer's Close -> eof; peer Reset -> connection_reset; local Reset ->
// operation_aborted; session closed -> connection_aborted; Write after ShutdownWrite ->
// broken_pipe. Destroying the handle without ShutdownWrite resets the stream; after
// ShutdownWrite the queued data is still delivered.
class MuxStream final : public Stream {
 public:
  ~MuxStream() override;
  // Streams alive in this process (leak and churn tests).
  static std::size_t live();

  boost::asio::any_io_executor get_executor() override;
  boost::asio::awaitable<IoResult> ReadSome(boost::asio::mutable_buffer buffer) override;
  // Completes once every byte is queued in the session (bounded by credit and send queue).
  boost::asio::awaitable<IoResult> Write(boost::asio::const_buffer buffer) override;
  // Queues Close; returns at once.
  boost::asio::awaitable<boost::system::error_code> ShutdownWrite() override;
  void Reset() override;
  // Reset with a backend-defined code and a reason the peer sees.
  void Reset(std::uint32_t code, std::string_view reason);
  std::string Describe() const override;

  StreamId id() const { return state_->id; }
  Priority priority() const { return state_->priority; }
  bool opened_locally() const { return state_->local; }
  // The metadata the peer put in its Open (empty for locally opened streams).
  std::span<const std::uint8_t> open_metadata() const { return state_->open_metadata; }
  // Why the stream failed (peer's reset reason, session close reason), else empty.
  const std::string& error_reason() const { return state_->error_reason; }
  // Received bytes not yet read.
  std::size_t buffered() const { return state_->recv_bytes; }

 private:
  friend class MuxSession;
  struct Waiter;
  MuxStream(std::shared_ptr<MuxSession> session, std::shared_ptr<StreamState> state);
  boost::system::error_code ErrorCode() const;

  std::shared_ptr<MuxSession> session_;
  std::shared_ptr<StreamState> state_;
  std::shared_ptr<Waiter> waiter_;
};

class MuxSession : public std::enable_shared_from_this<MuxSession>, private EngineObserver {
 public:
  // Throws std::invalid_argument if config.Validate() fails.
  static std::shared_ptr<MuxSession> Create(std::unique_ptr<Stream> transport,
                                            std::unique_ptr<FrameCodec> codec, MuxConfig config,
                                            std::shared_ptr<spdlog::logger> logger = nullptr);
  ~MuxSession() override;
  // Sessions alive in this process (leak and churn tests).
  static std::size_t live();
  MuxSession(const MuxSession&) = delete;
  MuxSession& operator=(const MuxSession&) = delete;

  // Starts the reader and writer. `already_received`: bytes the backend read from the transport
  // before handing it over (e.g. after its own handshake), decoded before anything else.
  void Start(std::vector<std::uint8_t> already_received = {});

  // Opens a stream (queues Open; data may follow at once). nullptr and `ec` set if the session
  // is closed (connection_aborted) or the stream cap / id space is exhausted (no_buffer_space).
  std::shared_ptr<MuxStream> Open(Priority priority, std::span<const std::uint8_t> metadata,
                                  boost::system::error_code& ec);
  std::shared_ptr<MuxStream> Open(Priority priority, boost::system::error_code& ec) {
    return Open(priority, {}, ec);
  }
  // Waits for the next peer-opened stream; nullptr once the session is closed.
  boost::asio::awaitable<std::shared_ptr<MuxStream>> Accept();

  // Backend frames: sent through the codec as kControl, received ones go to the handler
  // (called on the session's thread; the frame's payload is valid only during the call; the
  // handler may call SendControl or Close).
  void SendControl(std::span<const std::uint8_t> payload, Priority priority = Priority::kCritical);
  void SetControlHandler(std::function<void(const Frame&)> handler);
  // Called once (posted) when the session closes, with the reason.
  void SetClosedHandler(std::function<void(const std::string&)> handler);

  // See MuxConfig::wire_flow_control; false once a stream exists.
  bool SetWireFlowControl(bool on) { return engine_->SetWireFlowControl(on); }
  bool wire_flow_control() const { return engine_->wire_flow_control(); }

  // Abortive close: fails every stream, resets the transport. Idempotent.
  void Close(const std::string& reason);
  // Graceful: waits until every queued frame is written, half-closes the transport, waits for
  // the peer to close its end, then closes. All within `grace`, else an abortive Close.
  boost::asio::awaitable<void> Shutdown(std::chrono::milliseconds grace);
  // Waits until the session is closed.
  boost::asio::awaitable<void> WaitClosed();

  bool closed() const { return closed_; }
  const std::string& close_reason() const { return close_reason_; }
  boost::asio::any_io_executor get_executor() const { return executor_; }

  // Received-but-unread plus queued-for-sending Data bytes (the mux's own buffers).
  std::size_t BufferedBytes() const { return engine_->BufferedBytes(); }
  // Transport bytes read but not yet decoded (at most one partial frame plus a read).
  std::size_t InputBufferedBytes() const { return input_end_ - input_begin_; }
  std::size_t stream_count() const { return engine_->stream_count(); }
  const MuxCounters& counters() const { return engine_->counters(); }
  std::uint64_t transport_writes() const { return transport_writes_; }
  const MuxEngine& engine() const { return *engine_; }
  const MuxConfig& config() const { return engine_->config(); }

 private:
  friend class MuxStream;
  MuxSession(std::unique_ptr<Stream> transport, std::unique_ptr<FrameCodec> codec, MuxConfig config,
             std::shared_ptr<spdlog::logger> logger);
  boost::asio::awaitable<void> ReaderLoop(std::shared_ptr<MuxSession> self);
  boost::asio::awaitable<void> WriterLoop(std::shared_ptr<MuxSession> self);
  bool DecodeBuffered();
  std::shared_ptr<MuxStream> MakeHandle(std::shared_ptr<StreamState> state);

  void OnOutputReady() override { writer_wake_.Notify(); }
  void OnIncomingStream() override { accept_wake_.Notify(); }
  void OnReadResumable() override { reader_wake_.Notify(); }
  void OnControl(const Frame& frame) override;

  boost::asio::any_io_executor executor_;
  std::unique_ptr<Stream> transport_;
  std::unique_ptr<FrameCodec> codec_;
  std::shared_ptr<spdlog::logger> logger_;
  std::unique_ptr<MuxEngine> engine_;
  WakeSignal writer_wake_;
  WakeSignal reader_wake_;
  WakeSignal accept_wake_;
  WakeSignal closed_wake_;
  WakeSignal flushed_wake_;
  std::vector<std::uint8_t> input_;
  std::size_t input_begin_ = 0;
  std::size_t input_end_ = 0;
  std::vector<std::uint8_t> batch_;
  std::function<void(const Frame&)> control_handler_;
  std::function<void(const std::string&)> closed_handler_;
  bool started_ = false;
  bool closed_ = false;
  bool writer_busy_ = false;
  bool shutting_down_ = false;
  bool transport_shut_ = false;
  std::string close_reason_;
  std::uint64_t transport_writes_ = 0;
};

}  // namespace tunnelkit::mux
