// MuxEngine: the I/O-free heart of the multiplexer. It owns the stream table, id allocation,
// credit accounting, receive buffers and the four priority send queues. It is driven by
//   - the session's reader: OnFrame() for every decoded frame,
//   - the session's writer: FillBatch() encodes queued frames into one buffer,
//   - the streams' users: Open/Read/Write/ShutdownWrite/Reset/Release,
// and reports what happened through EngineObserver and StreamWaiter (wake-ups only; the
// observer never re-enters the engine synchronously except through its own calls).
// Unit tests drive two engines against each other with a codec and no sockets.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "tunnelkit/buffer_pool.hpp"
#include "tunnelkit/mux/config.hpp"
#include "tunnelkit/mux/frame.hpp"
#include "tunnelkit/mux/frame_codec.hpp"

namespace tunnelkit::mux {

// Why a stream's operations fail.
enum class StreamError : std::uint8_t {
  kNone,
  kPeerReset,      // the peer sent Reset (or refused the stream)
  kLocalReset,     // this side reset it
  kSessionClosed,  // the whole session closed
};

// Wakes the coroutines suspended on one stream. The session implements it with timers.
class StreamWaiter {
 public:
  virtual ~StreamWaiter() = default;
  virtual void WakeReader() = 0;
  virtual void WakeWriter() = 0;
};

class EngineObserver {
 public:
  virtual ~EngineObserver() = default;
  virtual void OnOutputReady() = 0;     // frames are queued for the writer
  virtual void OnIncomingStream() = 0;  // PopIncoming() has a stream
  virtual void OnReadResumable() = 0;   // ReadPaused() went from true to false
  virtual void OnControl(const Frame& frame) = 0;
};

struct StreamState;

// One queued outgoing frame.
struct OutFrame {
  FrameKind kind = FrameKind::kData;
  StreamId stream_id = 0;
  Priority priority = Priority::kNormal;
  std::uint32_t credit = 0;
  std::uint32_t code = 0;
  Chunk data;                       // kData payload
  std::vector<std::uint8_t> bytes;  // kOpen metadata, kReset reason, kControl payload
  std::shared_ptr<StreamState> stream;
  bool cancelled = false;  // lazily dropped when it reaches the front (keeps deque refs valid)
};

struct StreamState {
  StreamId id = 0;
  Priority priority = Priority::kNormal;
  bool local = false;  // opened by this side
  std::vector<std::uint8_t> open_metadata;

  // Receive side.
  std::deque<Chunk> recv;
  std::size_t recv_bytes = 0;
  bool recv_fin = false;             // the peer half-closed
  std::uint64_t recv_allowance = 0;  // credit mode: bytes the peer may still send
  std::uint32_t unacked_consumed = 0;
  bool over_limit = false;  // no-credit mode: recv_bytes > stream_window

  // Send side.
  std::uint64_t send_credit = 0;
  bool write_closed = false;      // Close queued (no more Data from us)
  bool open_pending = false;      // our Open frame is still queued
  OutFrame* tail_data = nullptr;  // last queued Data frame, may take more bytes
  bool waiting_for_space = false;

  // Lifecycle.
  bool in_table = false;
  bool released = false;  // the user's handle is gone
  StreamError error = StreamError::kNone;
  std::string error_reason;

  std::shared_ptr<StreamWaiter> waiter;
};

struct MuxCounters {
  std::uint64_t frames_in = 0;
  std::uint64_t frames_out = 0;
  std::uint64_t data_bytes_in = 0;
  std::uint64_t data_bytes_out = 0;
  std::uint64_t window_updates_out = 0;
  std::uint64_t streams_refused = 0;
};

class MuxEngine {
 public:
  // `codec` and `observer` must outlive the engine.
  MuxEngine(const MuxConfig& config, FrameCodec& codec, EngineObserver& observer);
  ~MuxEngine();
  MuxEngine(const MuxEngine&) = delete;
  MuxEngine& operator=(const MuxEngine&) = delete;

  // ---- Local side -------------------------------------------------------------------------
  // Allocates an id and queues Open. nullptr (with *error set) when the session has failed,
  // the stream cap is reached or ids are exhausted.
  std::shared_ptr<StreamState> Open(Priority priority, std::span<const std::uint8_t> metadata,
                                    std::string* error);
  // The oldest peer-opened stream not yet accepted, or nullptr.
  std::shared_ptr<StreamState> PopIncoming();
  std::size_t pending_incoming() const { return incoming_.size(); }

  // Copies buffered bytes into `out`; 0 if nothing is buffered (check recv_fin / error).
  std::size_t Read(StreamState& stream, std::span<std::uint8_t> out);
  // Queues up to `bytes.size()` bytes as Data frames, as far as credit and the send-queue bound
  // allow; returns how many were taken (0: wait for WakeWriter, or check error/write_closed).
  std::size_t Write(StreamState& stream, std::span<const std::uint8_t> bytes);
  // Queues Close (half-close). Queued Data still goes out first.
  void ShutdownWrite(StreamState& stream);
  // Abort both directions: drops buffered and queued bytes, queues Reset.
  void Reset(StreamState& stream, std::uint32_t code, std::string_view reason);
  // The user's handle is gone. Without a prior ShutdownWrite this resets the stream; after one,
  // queued data is still delivered and the stream lingers until the peer closes its side.
  void Release(StreamState& stream);
  // Queues a backend control frame.
  void SendControl(std::span<const std::uint8_t> payload, Priority priority);

  // Turns credit flow control on the wire on/off; only before the first stream (false if too
  // late). Effective only if the codec supports WindowUpdate.
  bool SetWireFlowControl(bool on);
  bool wire_flow_control() const { return wire_credit_; }

  // ---- Wire side --------------------------------------------------------------------------
  // Applies one decoded frame. false: protocol violation, the session must close (failure()).
  bool OnFrame(const Frame& frame);
  bool HasOutput() const;
  // Encodes queued frames, highest priority first, into `out` (appending) up to the batch
  // bounds. false: the codec refused a frame (failure() set).
  bool FillBatch(std::vector<std::uint8_t>& out);
  // The reader should stop reading the transport until OnReadResumable.
  bool ReadPaused() const;

  // Fails every open stream (pending operations end with kSessionClosed) and drops queues.
  void Fail(const std::string& reason);
  bool failed() const { return failed_; }
  const std::string& failure() const { return failure_; }

  // ---- Accounting -------------------------------------------------------------------------
  // Received-but-unread plus queued-for-sending Data bytes, over all streams.
  std::size_t BufferedBytes() const { return recv_buffered_ + send_queued_; }
  std::size_t ReceiveBufferedBytes() const { return recv_buffered_; }
  std::size_t SendQueuedBytes() const { return send_queued_; }
  std::size_t stream_count() const { return streams_.size(); }
  std::size_t max_data_payload() const { return max_data_payload_; }
  const MuxCounters& counters() const { return counters_; }
  const MuxConfig& config() const { return config_; }
  BufferPool& pool() { return *pool_; }

 private:
  std::shared_ptr<StreamState> Find(StreamId id) const;
  // The table's pointer to `stream`, or nullptr if it is no longer in the table.
  std::shared_ptr<StreamState> Self(const StreamState& stream) const;
  std::shared_ptr<StreamState> NewStream(StreamId id, Priority priority, bool local);
  OutFrame& Queue(Priority priority, FrameKind kind, const std::shared_ptr<StreamState>& stream);
  void CancelQueued(StreamState& stream);
  void DropReceived(StreamState& stream);
  void MaybeRetire(StreamState& stream);
  void Retire(StreamState& stream);
  void GrantConsumed(StreamState& stream, std::uint32_t bytes, bool force);
  void UpdateOverLimit(StreamState& stream);
  void WakeSpaceWaiters();
  bool Violation(std::string reason);
  bool PeerOwnsId(StreamId id) const;

  MuxConfig config_;
  FrameCodec& codec_;
  EngineObserver& observer_;
  std::shared_ptr<BufferPool> pool_;
  bool wire_credit_ = false;
  bool reset_on_wire_ = true;
  bool any_stream_opened_ = false;
  std::size_t max_data_payload_ = 0;

  std::uint64_t next_id_ = 1;
  std::unordered_map<StreamId, std::shared_ptr<StreamState>> streams_;
  std::deque<std::shared_ptr<StreamState>> incoming_;
  std::array<std::deque<OutFrame>, kPriorityLevels> queues_;
  std::size_t queued_frames_ = 0;  // not cancelled
  std::vector<std::shared_ptr<StreamState>> space_waiters_;

  std::size_t recv_buffered_ = 0;
  std::size_t send_queued_ = 0;
  std::size_t over_limit_streams_ = 0;
  bool failed_ = false;
  std::string failure_;
  MuxCounters counters_;
};

}  // namespace tunnelkit::mux
