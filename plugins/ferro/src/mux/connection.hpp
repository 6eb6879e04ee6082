// One FerroTunnel connection after the handshake: the stream table over the control transport
// (specs/ferrotunnel.md section 3). Streams are tunnelkit::Streams.
//
// - ids: the client opens odd ids, the server even ones; OpenStream is not acknowledged.
// - closing: ShutdownWrite sends CloseStream(Normal); the peer's CloseStream is end-of-stream
//   (any other reason is an error after the buffered bytes). A stream leaves the table once
//   both directions are finished.
// - writing: one writer coroutine drains a queue, ordered Critical > High > Normal > Low
//   (stable within a priority), many frames per socket write.
// - backpressure: without "tk-flow" as FerroTunnel: a stream holding more than
//   kPlainStreamBuffer unread bytes stalls the read loop (head-of-line, then TCP pushes back).
//   With "tk-flow" negotiated, every stream has a credit window in each direction, replenished
//   by WindowUpdate frames as the reader consumes, so a slow reader stalls only its stream.
// - kernel path: over plain TCP, a stream spliced to a TCP socket moves its payloads through
//   KernelPipes (SpliceFrom / AttachSink + SpliceTo): the frame headers are written and read
//   by this process, the payload bytes never leave the kernel. Same bytes on the wire.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "codec/codec.hpp"
#include "mux/notifier.hpp"
#include "tunnelkit/stream.hpp"
#include "tunnelkit/stream/framed_stream.hpp"
#include "tunnelkit/stream/kernel_pipe.hpp"

namespace spdlog {
class logger;
}

namespace tunnelkit::ferro {

class Connection;

class MuxStream final : public Stream,
                        public FramedStream,
                        public std::enable_shared_from_this<MuxStream> {
 public:
  MuxStream(std::shared_ptr<Connection> connection, std::uint32_t id, Protocol protocol,
            StreamPriority priority, std::uint32_t window);
  ~MuxStream() override;
  // Streams alive in this process (leak and churn tests).
  static std::size_t live();

  boost::asio::any_io_executor get_executor() override;
  boost::asio::awaitable<IoResult> ReadSome(boost::asio::mutable_buffer buffer) override;
  boost::asio::awaitable<IoResult> Write(boost::asio::const_buffer buffer) override;
  boost::asio::awaitable<boost::system::error_code> ShutdownWrite() override;
  void Reset() override;
  std::string Describe() const override;
  bool TryReadSome(boost::asio::mutable_buffer buffer, IoResult& result) override;
  bool TryWrite(boost::asio::const_buffer buffer, IoResult& result) override;
  FramedStream* framed() override { return this; }

  // The next received payload as it arrived (moved out, not copied), for a reader that
  // forwards whole pieces; ends as ReadSome does.
  boost::asio::awaitable<IoResult> ReadPiece(Bytes& piece) override;
  // ReadPiece's part that needs no waiting: false (and `piece` untouched) when it would wait.
  bool TryReadPiece(Bytes& piece, IoResult& result) override;
  // Sends `frame` as one data frame without copying it: its first kDataFrameHeaderSize bytes
  // are room for the header, the rest the payload (at most kMaxDataChunk).
  boost::asio::awaitable<IoResult> WriteFrame(Bytes&& frame) override;
  // WriteFrame's part that needs no waiting (within one frame, the credit and the queue's
  // bound): false, and `frame` untouched, when it would wait. (The Try* calls cost no
  // coroutine frame: a request/response exchange makes several per message.)
  bool TryWriteFrame(Bytes& frame, IoResult& result) override;
  std::size_t frame_header_room() const override { return kDataFrameHeaderSize; }
  std::size_t max_frame_payload() const override { return kMaxDataChunk; }

  // Completes once ReadSome would not wait: bytes are buffered, or the stream has ended or
  // failed. Lets a reader take a buffer only when there is something to put in it.
  boost::asio::awaitable<void> WaitReadable() override;
  // True when WaitReadable would complete at once.
  bool readable() const override { return buffered() > 0 || reset_ || remote_finished_; }

  std::uint32_t id() const { return id_; }
  Protocol protocol() const { return protocol_; }

  // The kernel path; only where can_splice() (the connection runs over plain TCP).
  bool can_splice() const override;
  // Moves the bytes `socket` has now into one data frame without copying them: splices them
  // into `pipe` (empty, this caller's), queues the frame and waits until it is written. eof
  // once the socket's peer has finished sending.
  boost::asio::awaitable<IoResult> SpliceFrom(boost::asio::ip::tcp::socket& socket,
                                              std::shared_ptr<KernelPipe> pipe) override;
  // From now on received payloads collect in `pipe` rather than in memory. Refused (false)
  // while bytes are buffered, so that they stay in order: read those first.
  bool AttachSink(std::shared_ptr<KernelPipe> pipe) override;
  // Moves received bytes from the sink into `socket`: returns how many, or eof / reset as
  // ReadSome once everything the peer sent has been moved.
  boost::asio::awaitable<IoResult> SpliceTo(boost::asio::ip::tcp::socket& socket) override;

 private:
  friend class Connection;
  // The reader took `n` bytes: flow-control credit goes back to the peer.
  void Consumed(std::size_t n);
  // Copies buffered bytes into `buffer` (at most inbound_bytes_).
  std::size_t CopyOut(boost::asio::mutable_buffer buffer);
  // After taking `taken` bytes from the front of the inbound queue.
  void DropFront(std::size_t taken);
  // eof / reset once nothing more will arrive, nullopt otherwise.
  std::optional<IoResult> EndOfInput() const;
  // Why a write cannot go out now (reset here or by the peer, connection closed, write side
  // shut down), nullopt when it can.
  std::optional<boost::system::error_code> WriteFailure() const;
  // The peer closed the stream with an error: it reads nothing more of it either.
  bool peer_reset() const { return !remote_error_.empty(); }
  // Called by the connection's read loop.
  void OnSinkData(std::size_t n);
  void OnData(Bytes&& data);
  void OnClose(const CloseReason& reason);
  void OnWindowUpdate(std::uint32_t increment);
  void OnConnectionClosed();
  std::size_t buffered() const { return inbound_bytes_ + (sink_ ? sink_->size() : 0); }

  std::shared_ptr<Connection> connection_;
  std::uint32_t id_;
  Protocol protocol_;
  StreamPriority priority_;
  // Received payloads not read yet, in order: frames from inbound_head_ on, the first one from
  // inbound_offset_. (Appending to one growing buffer copied every byte again and, while the
  // reader never quite caught up, grew without bound.)
  std::vector<Bytes> inbound_;
  std::size_t inbound_head_ = 0;
  std::size_t inbound_offset_ = 0;
  std::size_t inbound_bytes_ = 0;
  std::shared_ptr<KernelPipe> sink_;  // received payloads, when attached (kernel path)
  bool remote_finished_ = false;
  std::string remote_error_;  // CloseStream with a reason other than Normal
  bool local_finished_ = false;
  bool reset_ = false;
  std::uint64_t send_credit_;
  std::uint64_t consumed_unannounced_ = 0;
  std::uint64_t recv_window_;
  std::uint64_t bytes_moved_ = 0;  // both directions: a bulk stream's end triggers a heap trim  //
                                   // tk-flow: bytes the peer may have sent and we not yet read
  Notifier readable_;
  Notifier drained_;
  Notifier credit_;
};

class Connection final : public std::enable_shared_from_this<Connection> {
 public:
  struct Options {
    bool is_server = false;
    bool flow_control = false;  // "tk-flow" advertised by both ends
    std::uint32_t max_frame_size = kDefaultMaxFrameSize;
    std::uint32_t stream_window = 256 * 1024;  // tk-flow initial credit per stream and direction
    // A receiver whose reader keeps up grants extra credit up to this (both ends start from
    // stream_window; the peer only ever sends what was granted, so older peers interoperate).
    std::uint32_t max_stream_window = 4 * 1024 * 1024;
    std::size_t max_streams = 1024;  // streams the peer may have open at once
    bool kernel_splice = true;       // use the kernel path where it applies (plain TCP)
  };
  using StreamHandler = std::function<void(std::shared_ptr<MuxStream>)>;
  using ControlHandler = std::function<void(const Frame&)>;
  using ClosedHandler = std::function<void(const std::string& reason)>;

  static constexpr std::size_t kPlainStreamBuffer = 1024 * 1024;
  static constexpr std::size_t kMaxQueuedBytes = 8 * 1024 * 1024;
  static constexpr std::uint64_t kTrimAfterBytes = 4 * 1024 * 1024;
  static constexpr std::size_t kTrimAfterStreams = 128;
  // Kernel path: payload per spliced frame; the least worth reading around the decoder
  // (spliced, or read into the payload's own buffer; smaller payloads are decoded); the
  // receive window of a stream with a sink (its pipe must hold what the peer may
  // send, or the read loop would wait for that stream's reader).
  static constexpr std::size_t kMaxSpliceChunk = 256 * 1024;
  static constexpr std::size_t kMinDirectPayload = 16 * 1024;
  static constexpr std::size_t kSinkWindow = 512 * 1024;

  // `decoder` carries any bytes read past the handshake.
  Connection(std::unique_ptr<Stream> transport, FrameDecoder decoder, Options options,
             std::shared_ptr<spdlog::logger> logger);
  ~Connection();
  // Connections alive in this process, either side (leak and churn tests).
  static std::size_t live();

  // Starts the read and write loops. Handlers run on the connection's executor.
  void Start(StreamHandler on_stream, ControlHandler on_control, ClosedHandler on_closed);

  // Opens a stream toward the peer (OpenStream goes out at once; no acknowledgement).
  std::shared_ptr<MuxStream> Open(Protocol protocol, StreamPriority priority);
  // Queues a control frame.
  void Send(const Frame& frame, StreamPriority priority = StreamPriority::kNormal);
  // Ends the connection: every stream fails, the transport is reset, on_closed runs once.
  void Close(const std::string& reason);

  bool closed() const { return closed_; }
  bool can_splice() const { return tcp_ != nullptr; }
  // Payload bytes moved by the kernel path, both directions (tests, diagnostics).
  std::uint64_t spliced_bytes() const { return spliced_bytes_; }
  std::chrono::steady_clock::time_point last_received() const { return last_received_; }
  std::size_t stream_count() const { return streams_.size(); }
  boost::asio::any_io_executor get_executor() { return executor_; }
  const std::shared_ptr<spdlog::logger>& logger() const { return logger_; }

 private:
  friend class MuxStream;
  // A spliced frame's writer is done with its pipe (written, or the connection failed).
  struct SpliceTicket {
    explicit SpliceTicket(const boost::asio::any_io_executor& executor) : wake(executor) {}
    bool done = false;
    Notifier wake;
  };
  struct Outbound {
    StreamPriority priority;
    Bytes bytes;  // a spliced frame: its header; the payload follows from the pipe
    std::shared_ptr<KernelPipe> pipe;
    std::size_t pipe_bytes = 0;
    std::shared_ptr<SpliceTicket> ticket;
  };
  boost::asio::awaitable<void> ReadLoop();
  // Kernel path: the writer's and the reader's halves.
  boost::asio::awaitable<bool> SendFromPipe(std::uint32_t id, StreamPriority priority,
                                            std::shared_ptr<KernelPipe> pipe, std::size_t size);
  boost::asio::awaitable<bool> DrainPipe(KernelPipe& pipe, std::size_t size);
  boost::asio::awaitable<void> SpliceInbound(std::shared_ptr<MuxStream> stream,
                                             DataFrameStart start);
  boost::asio::awaitable<void> ReadPayloadDirect(std::shared_ptr<MuxStream> stream,
                                                 DataFrameStart start);
  // Hands a received payload to its stream (memory or sink), with plain-mode backpressure.
  boost::asio::awaitable<void> Deliver(std::shared_ptr<MuxStream> stream, Bytes&& payload);
  // After a transport read: true when the connection is closed or the read failed (then it
  // closes the connection, naming why).
  bool EndedBy(const IoResult& read);
  // False (and the connection closed) when `size` more bytes would exceed the stream's window.
  bool WithinWindow(const MuxStream& stream, std::size_t size);
  boost::asio::awaitable<void> WriteToSink(MuxStream& stream, const std::uint8_t* data,
                                           std::size_t size);
  static void Finish(Outbound& frame);
  boost::asio::awaitable<void> WriteLoop();
  boost::asio::awaitable<void> Dispatch(Frame&& frame);
  void Enqueue(StreamPriority priority, Bytes&& bytes);
  void EnqueueData(std::uint32_t id, StreamPriority priority, const std::uint8_t* data,
                   std::size_t size);
  void Forget(std::uint32_t id);

  boost::asio::any_io_executor executor_;
  std::unique_ptr<Stream> transport_;
  // The transport's socket when it is plain TCP and splicing is on.
  boost::asio::ip::tcp::socket* tcp_ = nullptr;
  std::uint64_t spliced_bytes_ = 0;
  bool header_sized_read_ = false;  // after a spliced frame: read the next header alone
  FrameDecoder decoder_;
  Options options_;
  std::shared_ptr<spdlog::logger> logger_;
  StreamHandler on_stream_;
  ControlHandler on_control_;
  ClosedHandler on_closed_;
  std::map<std::uint32_t, std::shared_ptr<MuxStream>> streams_;
  std::size_t stream_peak_ = 0;  // most streams open at once since the last heap trim
  std::uint32_t next_id_;
  std::deque<Outbound> queue_;
  std::size_t queued_bytes_ = 0;
  Notifier writer_wake_;
  Notifier space_;
  bool closed_ = false;
  bool started_ = false;
  std::chrono::steady_clock::time_point last_received_;
};

}  // namespace tunnelkit::ferro
