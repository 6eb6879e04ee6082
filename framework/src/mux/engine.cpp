#include "tunnelkit/mux/engine.hpp"

#include <algorithm>
#include <limits>

namespace tunnelkit::mux {
namespace {

constexpr std::uint64_t kUnlimitedCredit = std::numeric_limits<std::uint64_t>::max() / 2;
// A peer may not push our send credit beyond this (it would be a broken or hostile peer).
constexpr std::uint64_t kMaxSendCredit = std::uint64_t{1} << 40;

int Level(Priority priority) {
  return static_cast<int>(priority);
}

}  // namespace

const char* ToString(FrameKind kind) {
  switch (kind) {
    case FrameKind::kOpen:
      return "Open";
    case FrameKind::kData:
      return "Data";
    case FrameKind::kClose:
      return "Close";
    case FrameKind::kReset:
      return "Reset";
    case FrameKind::kWindowUpdate:
      return "WindowUpdate";
    case FrameKind::kControl:
      return "Control";
  }
  return "?";
}

const char* ToString(Priority priority) {
  switch (priority) {
    case Priority::kLow:
      return "low";
    case Priority::kNormal:
      return "normal";
    case Priority::kHigh:
      return "high";
    case Priority::kCritical:
      return "critical";
  }
  return "?";
}

MuxEngine::MuxEngine(const MuxConfig& config, FrameCodec& codec, EngineObserver& observer)
    : config_(config),
      codec_(codec),
      observer_(observer),
      pool_(BufferPool::Create(config.chunk_size, config.pool_max_free)) {
  SetWireFlowControl(config_.wire_flow_control);
  reset_on_wire_ = codec_.SupportsReset();
  max_data_payload_ =
      std::max<std::size_t>(1, std::min(config_.chunk_size, codec_.MaxDataPayload()));
  next_id_ = config_.local_ids == IdParity::kOdd ? 1 : 2;
}

MuxEngine::~MuxEngine() = default;

bool MuxEngine::SetWireFlowControl(bool on) {
  if (any_stream_opened_) return false;
  wire_credit_ = on && codec_.SupportsWindowUpdate();
  // With credit, a stream can never be granted less than the implicit initial window.
  if (wire_credit_) config_.stream_window = std::max(config_.stream_window, kInitialStreamWindow);
  return true;
}

bool MuxEngine::PeerOwnsId(StreamId id) const {
  const bool odd = (id % 2) == 1;
  return config_.local_ids == IdParity::kOdd ? !odd : odd;
}

std::shared_ptr<StreamState> MuxEngine::Find(StreamId id) const {
  auto it = streams_.find(id);
  return it == streams_.end() ? nullptr : it->second;
}

std::shared_ptr<StreamState> MuxEngine::Self(const StreamState& stream) const {
  auto found = Find(stream.id);
  return found.get() == &stream ? found : nullptr;
}

std::shared_ptr<StreamState> MuxEngine::NewStream(StreamId id, Priority priority, bool local) {
  auto stream = std::make_shared<StreamState>();
  stream->id = id;
  stream->priority = priority;
  stream->local = local;
  stream->in_table = true;
  if (wire_credit_) {
    stream->send_credit = kInitialStreamWindow;
    stream->recv_allowance = kInitialStreamWindow;
  } else {
    stream->send_credit = kUnlimitedCredit;
  }
  streams_.emplace(id, stream);
  any_stream_opened_ = true;
  return stream;
}

OutFrame& MuxEngine::Queue(Priority priority, FrameKind kind,
                           const std::shared_ptr<StreamState>& stream) {
  OutFrame& frame = queues_[Level(priority)].emplace_back();
  frame.kind = kind;
  frame.priority = priority;
  frame.stream = stream;
  frame.stream_id = stream ? stream->id : 0;
  ++queued_frames_;
  return frame;
}

std::shared_ptr<StreamState> MuxEngine::Open(Priority priority,
                                             std::span<const std::uint8_t> metadata,
                                             std::string* error) {
  if (failed_) {
    *error = "session closed: " + failure_;
    return nullptr;
  }
  if (streams_.size() >= config_.max_streams) {
    *error = "stream limit reached (" + std::to_string(config_.max_streams) + ")";
    return nullptr;
  }
  if (next_id_ > std::numeric_limits<StreamId>::max()) {
    *error = "stream ids exhausted";
    return nullptr;
  }
  const auto id = static_cast<StreamId>(next_id_);
  next_id_ += 2;
  auto stream = NewStream(id, priority, /*local=*/true);
  stream->open_pending = true;
  OutFrame& open = Queue(priority, FrameKind::kOpen, stream);
  open.bytes.assign(metadata.begin(), metadata.end());
  if (wire_credit_ && config_.stream_window > kInitialStreamWindow) {
    // Same queue as the Open, so the peer always learns the stream first.
    OutFrame& grant = Queue(priority, FrameKind::kWindowUpdate, stream);
    grant.credit = config_.stream_window - kInitialStreamWindow;
    stream->recv_allowance += grant.credit;
  }
  observer_.OnOutputReady();
  return stream;
}

std::shared_ptr<StreamState> MuxEngine::PopIncoming() {
  while (!incoming_.empty()) {
    auto stream = std::move(incoming_.front());
    incoming_.pop_front();
    if (stream->error == StreamError::kNone) return stream;
  }
  return nullptr;
}

std::size_t MuxEngine::Read(StreamState& stream, std::span<std::uint8_t> out) {
  std::size_t copied = 0;
  while (copied < out.size() && !stream.recv.empty()) {
    Chunk& chunk = stream.recv.front();
    const auto readable = chunk.readable();
    const std::size_t n = std::min(readable.size(), out.size() - copied);
    std::copy_n(readable.data(), n, out.data() + copied);
    chunk.Consume(n);
    copied += n;
    if (chunk.empty()) stream.recv.pop_front();
  }
  if (copied == 0) return 0;
  const bool was_paused = ReadPaused();
  stream.recv_bytes -= copied;
  recv_buffered_ -= copied;
  UpdateOverLimit(stream);
  if (wire_credit_ && !stream.recv_fin && stream.error == StreamError::kNone) {
    GrantConsumed(stream, static_cast<std::uint32_t>(copied), /*force=*/false);
  }
  if (was_paused && !ReadPaused()) observer_.OnReadResumable();
  return copied;
}

void MuxEngine::GrantConsumed(StreamState& stream, std::uint32_t bytes, bool force) {
  stream.unacked_consumed += bytes;
  // Batch updates: one per quarter window keeps the sender busy without a frame per read.
  if (!force && stream.unacked_consumed < std::max<std::uint32_t>(1, config_.stream_window / 4)) {
    return;
  }
  auto self = Self(stream);
  if (!self) return;
  OutFrame& update = Queue(Priority::kCritical, FrameKind::kWindowUpdate, self);
  update.credit = stream.unacked_consumed;
  stream.recv_allowance += stream.unacked_consumed;
  stream.unacked_consumed = 0;
  ++counters_.window_updates_out;
  observer_.OnOutputReady();
}

void MuxEngine::UpdateOverLimit(StreamState& stream) {
  const bool over = !wire_credit_ && stream.recv_bytes > config_.stream_window;
  if (over != stream.over_limit) {
    stream.over_limit = over;
    if (over) {
      ++over_limit_streams_;
    } else {
      --over_limit_streams_;
    }
  }
}

std::size_t MuxEngine::Write(StreamState& stream, std::span<const std::uint8_t> bytes) {
  if (failed_ || stream.error != StreamError::kNone || stream.write_closed) return 0;
  std::size_t taken = 0;
  while (taken < bytes.size()) {
    const std::size_t space =
        send_queued_ < config_.max_send_queued ? config_.max_send_queued - send_queued_ : 0;
    std::size_t n = std::min<std::uint64_t>(bytes.size() - taken, stream.send_credit);
    n = std::min(n, space);
    if (n == 0) {
      if (space == 0 && !stream.waiting_for_space) {
        stream.waiting_for_space = true;
        space_waiters_.push_back(Self(stream));
      }
      break;
    }
    OutFrame* frame = stream.tail_data;
    if (frame == nullptr || frame->data.size() >= max_data_payload_) {
      auto self = Self(stream);
      frame = &Queue(stream.priority, FrameKind::kData, self);
      frame->data = pool_->Acquire();
      stream.tail_data = frame;
    }
    const std::size_t room = max_data_payload_ - frame->data.size();
    const std::size_t copied = frame->data.Append(bytes.subspan(taken, std::min(n, room)));
    taken += copied;
    stream.send_credit -= copied;
    send_queued_ += copied;
  }
  if (taken > 0) observer_.OnOutputReady();
  return taken;
}

void MuxEngine::ShutdownWrite(StreamState& stream) {
  if (failed_ || stream.error != StreamError::kNone || stream.write_closed) return;
  stream.write_closed = true;
  stream.tail_data = nullptr;
  auto self = Self(stream);
  if (!self) return;
  Queue(stream.priority, FrameKind::kClose, self);
  observer_.OnOutputReady();
  MaybeRetire(stream);
}

void MuxEngine::Reset(StreamState& stream, std::uint32_t code, std::string_view reason) {
  if (stream.error != StreamError::kNone) return;
  stream.error = failed_ ? StreamError::kSessionClosed : StreamError::kLocalReset;
  stream.error_reason = std::string(reason);
  DropReceived(stream);
  const bool open_was_sent = !stream.open_pending;
  CancelQueued(stream);
  auto self = Self(stream);
  if (self && !failed_ && open_was_sent) {
    if (reset_on_wire_) {
      OutFrame& frame = Queue(Priority::kCritical, FrameKind::kReset, self);
      frame.code = code;
      frame.bytes.assign(reason.begin(), reason.end());
      observer_.OnOutputReady();
    } else if (!stream.write_closed) {
      Queue(Priority::kCritical, FrameKind::kClose, self);
      observer_.OnOutputReady();
    }
  }
  stream.write_closed = true;
  if (stream.in_table) Retire(stream);
  if (stream.waiter) {
    stream.waiter->WakeReader();
    stream.waiter->WakeWriter();
  }
}

void MuxEngine::Release(StreamState& stream) {
  if (stream.released) return;
  stream.released = true;
  stream.waiter.reset();
  if (stream.error != StreamError::kNone) return;
  if (!stream.write_closed) {
    Reset(stream, reset_code::kCancelled, "stream dropped");
    return;
  }
  // Graceful: queued data still goes out; whatever the peer still sends is discarded.
  DropReceived(stream);
}

void MuxEngine::SendControl(std::span<const std::uint8_t> payload, Priority priority) {
  if (failed_) return;
  OutFrame& frame = Queue(priority, FrameKind::kControl, nullptr);
  frame.bytes.assign(payload.begin(), payload.end());
  observer_.OnOutputReady();
}

void MuxEngine::DropReceived(StreamState& stream) {
  if (stream.recv_bytes == 0) return;
  const bool was_paused = ReadPaused();
  recv_buffered_ -= stream.recv_bytes;
  stream.recv_bytes = 0;
  stream.recv.clear();
  UpdateOverLimit(stream);
  if (was_paused && !ReadPaused()) observer_.OnReadResumable();
}

void MuxEngine::CancelQueued(StreamState& stream) {
  for (auto& queue : queues_) {
    for (OutFrame& frame : queue) {
      if (frame.cancelled || frame.stream.get() != &stream) continue;
      frame.cancelled = true;
      --queued_frames_;
      if (frame.kind == FrameKind::kData) {
        send_queued_ -= frame.data.size();
        frame.data = Chunk();
      }
      frame.stream.reset();
    }
  }
  stream.tail_data = nullptr;
  stream.open_pending = false;
  WakeSpaceWaiters();
}

void MuxEngine::MaybeRetire(StreamState& stream) {
  if (stream.in_table && stream.recv_fin && stream.write_closed) Retire(stream);
}

void MuxEngine::Retire(StreamState& stream) {
  stream.in_table = false;
  // `stream` may be owned only by the table: keep it alive through the erase.
  if (auto keep = Self(stream)) streams_.erase(stream.id);
}

void MuxEngine::WakeSpaceWaiters() {
  if (space_waiters_.empty() || send_queued_ >= config_.max_send_queued) return;
  auto waiters = std::move(space_waiters_);
  space_waiters_.clear();
  for (auto& stream : waiters) {
    if (!stream) continue;
    stream->waiting_for_space = false;
    if (stream->waiter) stream->waiter->WakeWriter();
  }
}

bool MuxEngine::Violation(std::string reason) {
  Fail(reason);
  return false;
}

bool MuxEngine::OnFrame(const Frame& frame) {
  if (failed_) return false;
  ++counters_.frames_in;
  switch (frame.kind) {
    case FrameKind::kOpen: {
      if (frame.stream_id == 0) return Violation("peer opened stream 0");
      if (!PeerOwnsId(frame.stream_id)) {
        return Violation("peer opened stream " + std::to_string(frame.stream_id) +
                         " with this side's id parity");
      }
      if (Find(frame.stream_id)) return true;  // duplicate Open: ignored, as FerroTunnel does
      if (streams_.size() >= config_.max_streams ||
          incoming_.size() >= config_.max_pending_accept) {
        ++counters_.streams_refused;
        if (reset_on_wire_) {
          OutFrame& reset = Queue(Priority::kCritical, FrameKind::kReset, nullptr);
          reset.stream_id = frame.stream_id;
          reset.code = reset_code::kRefused;
          const std::string_view why =
              streams_.size() >= config_.max_streams ? "stream limit reached" : "accept queue full";
          reset.bytes.assign(why.begin(), why.end());
        } else {
          OutFrame& close = Queue(Priority::kCritical, FrameKind::kClose, nullptr);
          close.stream_id = frame.stream_id;
        }
        observer_.OnOutputReady();
        return true;
      }
      auto stream = NewStream(frame.stream_id, frame.priority, /*local=*/false);
      stream->open_metadata.assign(frame.payload.begin(), frame.payload.end());
      if (wire_credit_ && config_.stream_window > kInitialStreamWindow) {
        OutFrame& grant = Queue(Priority::kCritical, FrameKind::kWindowUpdate, stream);
        grant.credit = config_.stream_window - kInitialStreamWindow;
        stream->recv_allowance += grant.credit;
        observer_.OnOutputReady();
      }
      incoming_.push_back(std::move(stream));
      observer_.OnIncomingStream();
      return true;
    }
    case FrameKind::kData: {
      counters_.data_bytes_in += frame.payload.size();
      auto stream = Find(frame.stream_id);
      if (!stream) return true;  // late data for a closed or reset stream
      if (stream->recv_fin) {
        return Violation("data after close on stream " + std::to_string(frame.stream_id));
      }
      if (wire_credit_) {
        if (frame.payload.size() > stream->recv_allowance) {
          return Violation("peer exceeded the flow-control window on stream " +
                           std::to_string(frame.stream_id));
        }
        stream->recv_allowance -= frame.payload.size();
      }
      if (stream->released) {
        // Lingering after a graceful release: discard, but keep the peer's credit flowing.
        if (wire_credit_ && !frame.payload.empty()) {
          GrantConsumed(*stream, static_cast<std::uint32_t>(frame.payload.size()), true);
        }
        return true;
      }
      if (frame.payload.empty()) return true;
      auto rest = frame.payload;
      if (!stream->recv.empty()) rest = rest.subspan(stream->recv.back().Append(rest));
      while (!rest.empty()) {
        stream->recv.push_back(pool_->Acquire());
        rest = rest.subspan(stream->recv.back().Append(rest));
      }
      stream->recv_bytes += frame.payload.size();
      recv_buffered_ += frame.payload.size();
      UpdateOverLimit(*stream);
      if (stream->waiter) stream->waiter->WakeReader();
      return true;
    }
    case FrameKind::kClose: {
      auto stream = Find(frame.stream_id);
      if (!stream) return true;
      stream->recv_fin = true;
      if (stream->waiter) stream->waiter->WakeReader();
      MaybeRetire(*stream);
      return true;
    }
    case FrameKind::kReset: {
      auto stream = Find(frame.stream_id);
      if (!stream) return true;
      stream->error = StreamError::kPeerReset;
      stream->error_reason = frame.payload.empty() ? "reset by peer" : std::string(frame.text());
      DropReceived(*stream);
      CancelQueued(*stream);
      stream->write_closed = true;
      Retire(*stream);
      if (stream->waiter) {
        stream->waiter->WakeReader();
        stream->waiter->WakeWriter();
      }
      return true;
    }
    case FrameKind::kWindowUpdate: {
      if (!wire_credit_) return true;  // not negotiated: ignore
      auto stream = Find(frame.stream_id);
      if (!stream) return true;
      stream->send_credit += frame.credit;
      if (stream->send_credit > kMaxSendCredit) {
        return Violation("peer's window on stream " + std::to_string(frame.stream_id) +
                         " overflows");
      }
      if (frame.credit > 0 && stream->waiter) stream->waiter->WakeWriter();
      return true;
    }
    case FrameKind::kControl:
      observer_.OnControl(frame);
      return !failed_;
  }
  return Violation("unknown frame kind");
}

bool MuxEngine::HasOutput() const {
  return queued_frames_ > 0;
}

bool MuxEngine::FillBatch(std::vector<std::uint8_t>& out) {
  if (failed_) return false;
  std::size_t frames = 0;
  bool freed_space = false;
  for (int level = kPriorityLevels - 1; level >= 0; --level) {
    auto& queue = queues_[level];
    while (!queue.empty()) {
      if (frames >= config_.max_batch_frames || out.size() >= config_.max_batch_bytes) break;
      OutFrame& item = queue.front();
      if (!item.cancelled) {
        Frame frame;
        frame.kind = item.kind;
        frame.stream_id = item.stream_id;
        frame.priority = item.priority;
        frame.credit = item.credit;
        frame.code = item.code;
        if (item.kind == FrameKind::kData) {
          frame.payload = item.data.readable();
        } else {
          frame.payload = item.bytes;
        }
        if (std::string error = codec_.Encode(frame, out); !error.empty()) {
          Fail("cannot encode " + std::string(ToString(item.kind)) + " frame: " + error);
          return false;
        }
        ++frames;
        ++counters_.frames_out;
        --queued_frames_;
        if (item.stream) {
          StreamState& stream = *item.stream;
          if (item.kind == FrameKind::kOpen) stream.open_pending = false;
          if (stream.tail_data == &item) stream.tail_data = nullptr;
        }
        if (item.kind == FrameKind::kData) {
          counters_.data_bytes_out += item.data.size();
          send_queued_ -= item.data.size();
          freed_space = true;
        }
      }
      queue.pop_front();
    }
    if (frames >= config_.max_batch_frames || out.size() >= config_.max_batch_bytes) break;
  }
  if (freed_space) WakeSpaceWaiters();
  return true;
}

bool MuxEngine::ReadPaused() const {
  return over_limit_streams_ > 0 || recv_buffered_ > config_.max_session_buffered;
}

void MuxEngine::Fail(const std::string& reason) {
  if (failed_) return;
  failed_ = true;
  failure_ = reason;
  auto fail_stream = [&](const std::shared_ptr<StreamState>& stream) {
    if (stream->error != StreamError::kNone) return;
    stream->error = StreamError::kSessionClosed;
    stream->error_reason = reason;
    stream->write_closed = true;
    stream->tail_data = nullptr;
    stream->in_table = false;
    // A stream whose peer already finished keeps what it received: it is complete.
    if (!stream->recv_fin) {
      stream->recv.clear();
      recv_buffered_ -= stream->recv_bytes;
      stream->recv_bytes = 0;
    }
    if (stream->over_limit) {
      stream->over_limit = false;
      --over_limit_streams_;
    }
    if (stream->waiter) {
      stream->waiter->WakeReader();
      stream->waiter->WakeWriter();
    }
  };
  auto streams = std::move(streams_);
  streams_.clear();
  for (auto& [id, stream] : streams) fail_stream(stream);
  for (auto& stream : incoming_) fail_stream(stream);
  incoming_.clear();
  for (auto& queue : queues_) queue.clear();
  queued_frames_ = 0;
  send_queued_ = 0;
  space_waiters_.clear();
}

}  // namespace tunnelkit::mux
