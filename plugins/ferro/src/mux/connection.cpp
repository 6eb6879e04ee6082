#include "mux/connection.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>

#include <spdlog/spdlog.h>
#include <boost/asio/buffer.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "tunnelkit/memory_trim.hpp"

namespace tunnelkit::ferro {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

int PriorityRank(StreamPriority p) {
  switch (p) {
    case StreamPriority::kCritical:
      return 0;
    case StreamPriority::kHigh:
      return 1;
    case StreamPriority::kNormal:
      return 2;
    case StreamPriority::kLow:
      return 3;
  }
  return 2;
}

constexpr std::size_t kMaxBatchFrames = 256;
constexpr std::size_t kMaxBatchBytes = 512 * 1024;  // bounds the joined buffer (TLS)
constexpr std::size_t kReadChunk = 64 * 1024;
constexpr std::size_t kTlsRecordPlaintext = 16 * 1024;

// Live objects, for tests that check nothing is leaked (connection churn).
std::atomic<std::size_t> live_streams{0};
std::atomic<std::size_t> live_connections{0};

}  // namespace

// ---------------------------------------------------------------------------------------------
// MuxStream

std::size_t MuxStream::live() {
  return live_streams.load(std::memory_order_relaxed);
}

MuxStream::~MuxStream() {
  live_streams.fetch_sub(1, std::memory_order_relaxed);
}

MuxStream::MuxStream(std::shared_ptr<Connection> connection, std::uint32_t id, Protocol protocol,
                     StreamPriority priority, std::uint32_t window)
    : connection_(std::move(connection)),
      id_(id),
      protocol_(protocol),
      priority_(priority),
      send_credit_(window),
      recv_window_(window),
      readable_(connection_->get_executor()),
      drained_(connection_->get_executor()),
      credit_(connection_->get_executor()) {
  live_streams.fetch_add(1, std::memory_order_relaxed);
}

asio::any_io_executor MuxStream::get_executor() {
  return connection_->get_executor();
}

std::string MuxStream::Describe() const {
  return "ferro stream " + std::to_string(id_) + " (" + std::string(ProtocolName(protocol_)) + ")";
}

void MuxStream::DropFront(std::size_t taken) {
  inbound_bytes_ -= taken;
  if (inbound_head_ == inbound_.size()) {
    if (inbound_.capacity() > 16) {
      std::vector<Bytes>().swap(inbound_);  // an idle stream keeps next to nothing
    } else {
      inbound_.clear();
    }
    inbound_head_ = 0;
  } else if (inbound_head_ >= 64) {
    inbound_.erase(inbound_.begin(), inbound_.begin() + static_cast<std::ptrdiff_t>(inbound_head_));
    inbound_head_ = 0;
  }
  Consumed(taken);
}

std::optional<IoResult> MuxStream::EndOfInput() const {
  if (reset_) return IoResult{asio::error::connection_reset, 0};
  if (remote_finished_) {
    if (!remote_error_.empty()) return IoResult{asio::error::connection_reset, 0};
    return IoResult{asio::error::eof, 0};
  }
  return std::nullopt;
}

std::optional<boost::system::error_code> MuxStream::WriteFailure() const {
  if (reset_ || connection_->closed_) return asio::error::broken_pipe;
  if (peer_reset()) return asio::error::connection_reset;
  if (local_finished_) return asio::error::shut_down;
  return std::nullopt;
}

std::size_t MuxStream::CopyOut(asio::mutable_buffer buffer) {
  // Copies from the queued frames' payloads (kept as received: no joining copy).
  const std::size_t n = std::min(buffer.size(), inbound_bytes_);
  auto* out = static_cast<std::uint8_t*>(buffer.data());
  std::size_t copied = 0;
  while (copied < n) {
    const Bytes& front = inbound_[inbound_head_];
    const std::size_t take = std::min(n - copied, front.size() - inbound_offset_);
    std::memcpy(out + copied, front.data() + inbound_offset_, take);
    copied += take;
    inbound_offset_ += take;
    if (inbound_offset_ == front.size()) {
      Bytes().swap(inbound_[inbound_head_]);
      ++inbound_head_;
      inbound_offset_ = 0;
    }
  }
  DropFront(n);
  return n;
}

asio::awaitable<IoResult> MuxStream::ReadSome(asio::mutable_buffer buffer) {
  auto self = shared_from_this();
  for (;;) {
    if (inbound_bytes_ > 0) co_return IoResult{{}, CopyOut(buffer)};
    if (auto end = EndOfInput()) co_return *end;
    if (buffer.size() == 0) co_return IoResult{};
    co_await readable_.Wait();
  }
}

bool MuxStream::TryReadSome(asio::mutable_buffer buffer, IoResult& result) {
  if (inbound_bytes_ > 0) {
    result = IoResult{{}, CopyOut(buffer)};
    return true;
  }
  if (auto end = EndOfInput()) {
    result = *end;
    return true;
  }
  return false;
}

bool MuxStream::TryWrite(asio::const_buffer buffer, IoResult& result) {
  // Only what needs no waiting: one frame's worth, within the credit, with room in the queue.
  const std::size_t size = buffer.size();
  if (WriteFailure() || size > kMaxDataChunk ||
      (connection_->options_.flow_control && send_credit_ < size) ||
      connection_->queued_bytes_ + size > Connection::kMaxQueuedBytes) {
    return false;
  }
  if (connection_->options_.flow_control) send_credit_ -= size;
  connection_->EnqueueData(id_, priority_, static_cast<const std::uint8_t*>(buffer.data()), size);
  bytes_moved_ += size;
  result = IoResult{{}, size};
  return true;
}

bool MuxStream::TryReadPiece(Bytes& piece, IoResult& result) {
  if (inbound_bytes_ > 0) {
    Bytes& front = inbound_[inbound_head_];
    if (inbound_offset_ == 0) {
      piece = std::move(front);
    } else {
      piece.assign(front.begin() + static_cast<std::ptrdiff_t>(inbound_offset_), front.end());
    }
    Bytes().swap(front);
    ++inbound_head_;
    inbound_offset_ = 0;
    DropFront(piece.size());
    result = IoResult{{}, piece.size()};
    return true;
  }
  if (auto end = EndOfInput()) {
    result = *end;
    return true;
  }
  return false;
}

asio::awaitable<IoResult> MuxStream::ReadPiece(Bytes& piece) {
  auto self = shared_from_this();
  IoResult result;
  while (!TryReadPiece(piece, result)) co_await readable_.Wait();
  co_return result;
}

bool MuxStream::TryWriteFrame(Bytes& frame, IoResult& result) {
  const std::size_t size = frame.size() - kDataFrameHeaderSize;
  const bool flow = connection_->options_.flow_control;
  if (WriteFailure() || size > kMaxDataChunk || (flow && send_credit_ < size) ||
      connection_->queued_bytes_ + frame.size() > Connection::kMaxQueuedBytes) {
    return false;
  }
  if (flow) send_credit_ -= size;
  const auto header = EncodeDataHeader(id_, size);
  std::memcpy(frame.data(), header.data(), header.size());
  connection_->Enqueue(priority_, std::move(frame));
  bytes_moved_ += size;
  result = IoResult{{}, size};
  return true;
}

asio::awaitable<IoResult> MuxStream::WriteFrame(Bytes&& frame) {
  auto self = shared_from_this();
  const std::size_t size = frame.size() - kDataFrameHeaderSize;
  const bool flow = connection_->options_.flow_control;
  if (size > kMaxDataChunk || (flow && send_credit_ < size)) {
    // Beyond one frame, or more than the credit: split (and wait) as Write does.
    co_return co_await Write(asio::buffer(frame.data() + kDataFrameHeaderSize, size));
  }
  if (const auto failure = WriteFailure()) co_return IoResult{*failure, 0};
  if (flow) send_credit_ -= size;
  const auto header = EncodeDataHeader(id_, size);
  std::memcpy(frame.data(), header.data(), header.size());
  connection_->Enqueue(priority_, std::move(frame));
  bytes_moved_ += size;
  while (connection_->queued_bytes_ > Connection::kMaxQueuedBytes && !connection_->closed_) {
    co_await connection_->space_.Wait();
  }
  co_return IoResult{{}, size};
}

void MuxStream::Consumed(std::size_t n) {
  drained_.Notify();
  if (!connection_->options_.flow_control || remote_finished_ || reset_) return;
  consumed_unannounced_ += n;
  if (consumed_unannounced_ < recv_window_ / 2) return;
  // The reader keeps up (little left buffered): the sender is held back by credit, so grant
  // more than was consumed, doubling the window up to the connection's maximum (a sink's pipe
  // bounds it lower). Credit in flight is what bounds one stream's throughput (window / loop
  // delay).
  std::uint64_t extra = 0;
  std::uint64_t max_window = connection_->options_.max_stream_window;
  if (sink_) max_window = std::min<std::uint64_t>(max_window, Connection::kSinkWindow);
  if (recv_window_ < max_window && buffered() < recv_window_ / 4) {
    extra = std::min<std::uint64_t>(recv_window_, max_window - recv_window_);
    recv_window_ += extra;
  }
  connection_->Send(WindowUpdate{id_, static_cast<std::uint32_t>(consumed_unannounced_ + extra)},
                    StreamPriority::kCritical);
  consumed_unannounced_ = 0;
}

bool MuxStream::can_splice() const {
  return connection_->can_splice();
}

asio::awaitable<IoResult> MuxStream::SpliceFrom(tcp::socket& socket,
                                                std::shared_ptr<KernelPipe> pipe) {
  auto self = shared_from_this();
  for (;;) {
    if (const auto failure = WriteFailure()) co_return IoResult{*failure, 0};
    std::size_t chunk = Connection::kMaxSpliceChunk;
    if (connection_->options_.flow_control) {
      if (send_credit_ == 0) {
        co_await credit_.Wait();
        continue;
      }
      chunk = std::min<std::size_t>(chunk, send_credit_);
    }
    const KernelPipe::Move m = pipe->FillFrom(socket.native_handle(), chunk);
    if (m.status == KernelPipe::Status::kEnd) co_return IoResult{asio::error::eof, 0};
    if (m.status == KernelPipe::Status::kError) {
      co_return IoResult{boost::system::error_code(m.error, boost::system::system_category()), 0};
    }
    if (m.status == KernelPipe::Status::kWouldBlock) {
      boost::system::error_code ec;
      co_await socket.async_wait(tcp::socket::wait_read,
                                 asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return IoResult{ec, 0};
      continue;
    }
    if (connection_->options_.flow_control) send_credit_ -= m.bytes;
    bytes_moved_ += m.bytes;
    if (!co_await connection_->SendFromPipe(id_, priority_, pipe, m.bytes)) {
      co_return IoResult{asio::error::broken_pipe, 0};
    }
    co_return IoResult{{}, m.bytes};
  }
}

bool MuxStream::AttachSink(std::shared_ptr<KernelPipe> pipe) {
  if (!can_splice() || sink_ || inbound_bytes_ > 0 || reset_ || remote_finished_) return false;
  // The peer may send up to the window unread: the pipe must hold it.
  if (connection_->options_.flow_control && recv_window_ > pipe->capacity() / 2) return false;
  sink_ = std::move(pipe);
  return true;
}

asio::awaitable<IoResult> MuxStream::SpliceTo(tcp::socket& socket) {
  auto self = shared_from_this();
  for (;;) {
    if (sink_ && sink_->size() > 0 && !reset_) {
      const KernelPipe::Move m = sink_->DrainTo(socket.native_handle(), sink_->size());
      if (m.status == KernelPipe::Status::kMoved) {
        Consumed(m.bytes);
        co_return IoResult{{}, m.bytes};
      }
      if (m.status == KernelPipe::Status::kError) {
        co_return IoResult{boost::system::error_code(m.error, boost::system::system_category()), 0};
      }
      boost::system::error_code ec;
      co_await socket.async_wait(tcp::socket::wait_write,
                                 asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return IoResult{ec, 0};
      continue;
    }
    if (auto end = EndOfInput()) co_return *end;
    co_await readable_.Wait();
  }
}

asio::awaitable<void> MuxStream::WaitReadable() {
  auto self = shared_from_this();
  while (buffered() == 0 && !reset_ && !remote_finished_) co_await readable_.Wait();
}

asio::awaitable<IoResult> MuxStream::Write(asio::const_buffer buffer) {
  auto self = shared_from_this();
  const auto* data = static_cast<const std::uint8_t*>(buffer.data());
  std::size_t left = buffer.size();
  std::size_t written = 0;
  while (left > 0) {
    // Checked after every wait: a peer that resets the stream wakes a writer waiting for
    // credit, which then fails rather than waiting for credit that will never come.
    if (const auto failure = WriteFailure()) co_return IoResult{*failure, written};
    std::size_t chunk = std::min(left, kMaxDataChunk);
    if (connection_->options_.flow_control) {
      if (send_credit_ == 0) {
        co_await credit_.Wait();
        continue;
      }
      chunk = std::min<std::size_t>(chunk, send_credit_);
      send_credit_ -= chunk;
    }
    connection_->EnqueueData(id_, priority_, data, chunk);
    bytes_moved_ += chunk;
    data += chunk;
    left -= chunk;
    written += chunk;
    while (connection_->queued_bytes_ > Connection::kMaxQueuedBytes && !connection_->closed_) {
      co_await connection_->space_.Wait();
    }
  }
  co_return IoResult{{}, written};
}

asio::awaitable<boost::system::error_code> MuxStream::ShutdownWrite() {
  if (reset_ || connection_->closed_) co_return asio::error::broken_pipe;
  if (peer_reset()) co_return asio::error::connection_reset;
  if (!local_finished_) {
    local_finished_ = true;
    connection_->Send(CloseStream{id_, {CloseReason::Kind::kNormal, ""}}, priority_);
    if (remote_finished_) connection_->Forget(id_);
  }
  co_return boost::system::error_code{};
}

void MuxStream::Reset() {
  if (reset_) return;
  reset_ = true;
  // The peer hears of it unless it reset the stream itself or both directions had ended: also
  // after our own CloseStream(Normal), since its writer may be waiting for credit that our
  // reader will now never return.
  if (!connection_->closed_ && !peer_reset() && (!local_finished_ || !remote_finished_)) {
    local_finished_ = true;
    connection_->Send(CloseStream{id_, {CloseReason::Kind::kError, "reset"}}, priority_);
  }
  connection_->Forget(id_);
  if (sink_) sink_->Cancel();  // the read loop may wait for room in it
  readable_.Notify();
  drained_.Notify();
  credit_.Notify();
}

void MuxStream::OnSinkData(std::size_t n) {
  bytes_moved_ += n;
  readable_.Notify();
}

void MuxStream::OnData(Bytes&& data) {
  if (remote_finished_ || reset_) return;
  bytes_moved_ += data.size();
  if (data.empty()) return;
  inbound_bytes_ += data.size();
  inbound_.push_back(std::move(data));
  readable_.Notify();
}

void MuxStream::OnClose(const CloseReason& reason) {
  const bool error = reason.kind != CloseReason::Kind::kNormal;
  // An error close also counts after a Normal one: the peer has stopped reading.
  if (remote_finished_ && (!error || peer_reset())) return;
  remote_finished_ = true;
  if (error) {
    remote_error_ = reason.kind == CloseReason::Kind::kError ? reason.message : "closed";
    if (remote_error_.empty()) remote_error_ = "error";
  }
  readable_.Notify();
  credit_.Notify();  // a writer waiting for credit fails now (WriteFailure)
  // After a reset by the peer nothing more is exchanged: the stream leaves the table.
  if (local_finished_ || error) connection_->Forget(id_);
}

void MuxStream::OnWindowUpdate(std::uint32_t increment) {
  send_credit_ += increment;
  credit_.Notify();
}

void MuxStream::OnConnectionClosed() {
  reset_ = true;
  if (sink_) sink_->Cancel();
  readable_.Notify();
  drained_.Notify();
  credit_.Notify();
}

// ---------------------------------------------------------------------------------------------
// Connection

Connection::Connection(std::unique_ptr<Stream> transport, FrameDecoder decoder, Options options,
                       std::shared_ptr<spdlog::logger> logger)
    : executor_(transport->get_executor()),
      transport_(std::move(transport)),
      decoder_(std::move(decoder)),
      options_(options),
      logger_(std::move(logger)),
      next_id_(options.is_server ? 2 : 1),
      writer_wake_(executor_),
      space_(executor_),
      last_received_(std::chrono::steady_clock::now()) {
  if (options_.kernel_splice) tcp_ = transport_->plain_tcp_socket();
  live_connections.fetch_add(1, std::memory_order_relaxed);
}

Connection::~Connection() {
  live_connections.fetch_sub(1, std::memory_order_relaxed);
}

std::size_t Connection::live() {
  return live_connections.load(std::memory_order_relaxed);
}

void Connection::Start(StreamHandler on_stream, ControlHandler on_control,
                       ClosedHandler on_closed) {
  on_stream_ = std::move(on_stream);
  on_control_ = std::move(on_control);
  on_closed_ = std::move(on_closed);
  started_ = true;
  auto self = shared_from_this();
  asio::co_spawn(
      executor_, [self]() { return self->ReadLoop(); }, asio::detached);
  asio::co_spawn(
      executor_, [self]() { return self->WriteLoop(); }, asio::detached);
}

std::shared_ptr<MuxStream> Connection::Open(Protocol protocol, StreamPriority priority) {
  const std::uint32_t id = next_id_;
  next_id_ += 2;
  auto stream = std::make_shared<MuxStream>(shared_from_this(), id, protocol, priority,
                                            options_.flow_control ? options_.stream_window : 0);
  if (closed_) {
    stream->OnConnectionClosed();
    return stream;
  }
  streams_[id] = stream;
  stream_peak_ = std::max(stream_peak_, streams_.size());
  Send(OpenStream{id, protocol, {}, std::nullopt, priority}, priority);
  return stream;
}

void Connection::Send(const Frame& frame, StreamPriority priority) {
  if (closed_) return;
  Bytes bytes;
  std::string error;
  if (!EncodeFrame(frame, bytes, error, options_.max_frame_size)) {
    logger_->error("cannot encode {}: {}", FrameName(frame), error);
    return;
  }
  Enqueue(priority, std::move(bytes));
}

void Connection::EnqueueData(std::uint32_t id, StreamPriority priority, const std::uint8_t* data,
                             std::size_t size) {
  Bytes bytes;
  bytes.reserve(kDataFrameHeaderSize + size);
  const auto header = EncodeDataHeader(id, size);
  bytes.insert(bytes.end(), header.begin(), header.end());
  bytes.insert(bytes.end(), data, data + size);
  Enqueue(priority, std::move(bytes));
}

void Connection::Enqueue(StreamPriority priority, Bytes&& bytes) {
  if (closed_) return;
  queued_bytes_ += bytes.size();
  queue_.push_back(Outbound{priority, std::move(bytes)});
  writer_wake_.Notify();
}

void Connection::Forget(std::uint32_t id) {
  auto it = streams_.find(id);
  if (it == streams_.end()) return;
  const bool bulk = it->second->bytes_moved_ >= kTrimAfterBytes;
  streams_.erase(it);
  // After a bulk stream, or once most of a crowd of streams is gone, hand the freed heap back.
  if (bulk || (stream_peak_ >= kTrimAfterStreams && streams_.size() <= stream_peak_ / 2)) {
    stream_peak_ = streams_.size();
    ScheduleMemoryTrim(executor_);
  }
}

void Connection::Close(const std::string& reason) {
  if (closed_) return;
  closed_ = true;
  auto self = shared_from_this();  // handlers may drop the last outside reference
  auto streams = std::move(streams_);
  streams_.clear();
  for (auto& [id, stream] : streams) stream->OnConnectionClosed();
  for (auto& frame : queue_) Finish(frame);
  queue_.clear();
  queued_bytes_ = 0;
  transport_->Reset();
  writer_wake_.Notify();
  space_.Notify();
  if (on_closed_) {
    auto handler = std::move(on_closed_);
    on_closed_ = nullptr;
    handler(reason);
  }
  on_stream_ = nullptr;
  on_control_ = nullptr;
}

void Connection::Finish(Outbound& frame) {
  if (frame.ticket && !frame.ticket->done) {
    frame.ticket->done = true;
    frame.ticket->wake.Notify();
  }
}

asio::awaitable<bool> Connection::SendFromPipe(std::uint32_t id, StreamPriority priority,
                                               std::shared_ptr<KernelPipe> pipe, std::size_t size) {
  if (closed_) co_return false;
  auto ticket = std::make_shared<SpliceTicket>(executor_);
  const auto header = EncodeDataHeader(id, size);
  queued_bytes_ += header.size();
  queue_.push_back(
      Outbound{priority, Bytes(header.begin(), header.end()), std::move(pipe), size, ticket});
  writer_wake_.Notify();
  while (!ticket->done && !closed_) co_await ticket->wake.Wait();
  co_return !closed_;
}

asio::awaitable<bool> Connection::DrainPipe(KernelPipe& pipe, std::size_t size) {
  const boost::system::error_code ec = co_await DrainExactly(pipe, *tcp_, size);
  if (closed_) co_return false;
  if (ec) {
    Close("write failed: " + ec.message());
    co_return false;
  }
  spliced_bytes_ += size;
  co_return true;
}

asio::awaitable<void> Connection::WriteLoop() {
  auto self = shared_from_this();
  std::vector<Outbound> batch;
  std::vector<asio::const_buffer> gather;
  Bytes joined;
  // Plain TCP: one gathered write of the frames as they are (a spliced frame's payload follows
  // its header from the pipe). TLS: small frames joined into one buffer so that records are
  // full-sized (a record per small frame would cost more than the copy).
  tcp::socket* tcp = transport_->plain_tcp_socket();
  while (!closed_) {
    if (queue_.empty()) {
      co_await writer_wake_.Wait();
      continue;
    }
    batch.clear();
    std::size_t size = 0;
    while (!queue_.empty() && batch.size() < kMaxBatchFrames &&
           (batch.empty() || size + queue_.front().bytes.size() <= kMaxBatchBytes)) {
      size += queue_.front().bytes.size();
      batch.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
    std::stable_sort(batch.begin(), batch.end(), [](const Outbound& a, const Outbound& b) {
      return PriorityRank(a.priority) < PriorityRank(b.priority);
    });
    boost::system::error_code ec;
    if (tcp) {
      gather.clear();
      for (auto& frame : batch) {
        gather.push_back(asio::buffer(frame.bytes));
        if (!frame.pipe) continue;
        co_await asio::async_write(*tcp, gather, asio::redirect_error(asio::use_awaitable, ec));
        gather.clear();
        if (ec || closed_ || !co_await DrainPipe(*frame.pipe, frame.pipe_bytes)) break;
        Finish(frame);
      }
      if (!gather.empty() && !ec && !closed_)
        co_await asio::async_write(*tcp, gather, asio::redirect_error(asio::use_awaitable, ec));
    } else {
      // Small frames joined (one record for many); a frame of a record or more goes as it is.
      joined.clear();
      for (auto& frame : batch) {
        if (frame.bytes.size() < kTlsRecordPlaintext) {
          joined.insert(joined.end(), frame.bytes.begin(), frame.bytes.end());
          continue;
        }
        if (!joined.empty()) {
          ec = (co_await transport_->Write(asio::buffer(joined))).ec;
          joined.clear();
          if (ec || closed_) break;
        }
        ec = (co_await transport_->Write(asio::buffer(frame.bytes))).ec;
        if (ec || closed_) break;
      }
      if (!joined.empty() && !ec && !closed_) {
        ec = (co_await transport_->Write(asio::buffer(joined))).ec;
      }
    }
    for (auto& frame : batch) Finish(frame);
    if (closed_) break;
    batch.clear();  // frees the frames' memory now, not at the next batch
    queued_bytes_ -= std::min(queued_bytes_, size);
    space_.Notify();
    if (ec) {
      Close("write failed: " + ec.message());
      break;
    }
  }
}

asio::awaitable<void> Connection::ReadLoop() {
  auto self = shared_from_this();
  // Frames the handshake reader left in the decoder come first.
  for (;;) {
    Frame frame;
    DecodeStatus status = DecodeStatus::kNeedMore;
    while (!closed_) {
      // The rest of a large payload goes from the transport straight to where it is read, not
      // through the decoder: into the stream's pipe on the kernel path, else into its own buffer.
      const auto start = decoder_.PeekDataFrame();
      if (start && start->payload_size - start->payload_buffered >= kMinDirectPayload) {
        auto it = streams_.find(start->stream_id);
        if (it != streams_.end() && !it->second->reset_ && !it->second->remote_finished_) {
          last_received_ = std::chrono::steady_clock::now();
          if (tcp_ && it->second->sink_) {
            co_await SpliceInbound(it->second, *start);
          } else {
            co_await ReadPayloadDirect(it->second, *start);
          }
          continue;
        }
      }
      if ((status = decoder_.Next(frame)) != DecodeStatus::kFrame) break;
      last_received_ = std::chrono::steady_clock::now();
      co_await Dispatch(std::move(frame));
    }
    if (closed_) co_return;
    if (status == DecodeStatus::kError) {
      Close("malformed frame: " + decoder_.error());
      co_return;
    }
    // Right after a spliced payload, read the next header alone: a full-sized read would pull
    // the start of the next payload through memory.
    std::size_t want = kReadChunk;
    if (header_sized_read_ && decoder_.buffered() < kDataFrameHeaderSize) {
      want = kDataFrameHeaderSize - decoder_.buffered();
    }
    header_sized_read_ = false;
    const auto room = decoder_.Prepare(want);
    IoResult r = co_await transport_->ReadSome(asio::buffer(room.data(), room.size()));
    decoder_.Commit(r.ec ? 0 : r.bytes);
    if (EndedBy(r)) co_return;
  }
}

bool Connection::EndedBy(const IoResult& read) {
  if (closed_) return true;
  if (!read.ec) return false;
  Close(read.ec == asio::error::eof ? "peer closed the connection"
                                    : "read failed: " + read.ec.message());
  return true;
}

bool Connection::WithinWindow(const MuxStream& stream, std::size_t size) {
  if (!options_.flow_control || stream.buffered() + size <= stream.recv_window_) return true;
  Close("protocol violation: stream " + std::to_string(stream.id()) +
        " exceeded its flow-control window");
  return false;
}

asio::awaitable<void> Connection::Deliver(std::shared_ptr<MuxStream> stream, Bytes&& payload) {
  if (stream->sink_) {
    if (!stream->remote_finished_) co_await WriteToSink(*stream, payload.data(), payload.size());
    co_return;
  }
  stream->OnData(std::move(payload));
  // Plain FerroTunnel backpressure: wait until this stream's reader catches up.
  while (!options_.flow_control && !closed_ && !stream->reset_ &&
         stream->buffered() > kPlainStreamBuffer) {
    co_await stream->drained_.Wait();
  }
}

asio::awaitable<void> Connection::ReadPayloadDirect(std::shared_ptr<MuxStream> stream,
                                                    DataFrameStart start) {
  if (!WithinWindow(*stream, start.payload_size)) co_return;
  Bytes payload(start.payload_size);  // not zeroed
  std::memcpy(payload.data(), start.payload, start.payload_buffered);
  decoder_.Discard(kDataFrameHeaderSize + start.payload_buffered);
  std::size_t have = start.payload_buffered;
  while (have < payload.size()) {
    IoResult r =
        co_await transport_->ReadSome(asio::buffer(payload.data() + have, payload.size() - have));
    if (EndedBy(r)) co_return;
    have += r.bytes;
  }
  header_sized_read_ = true;
  co_await Deliver(std::move(stream), std::move(payload));
}

asio::awaitable<void> Connection::SpliceInbound(std::shared_ptr<MuxStream> stream,
                                                DataFrameStart start) {
  if (!WithinWindow(*stream, start.payload_size)) co_return;
  // What the decoder holds of the payload goes in from memory, the rest from the socket.
  co_await WriteToSink(*stream, start.payload, start.payload_buffered);
  decoder_.Discard(kDataFrameHeaderSize + start.payload_buffered);
  std::size_t left = start.payload_size - start.payload_buffered;
  const int fd = tcp_->native_handle();
  while (left > 0 && !closed_) {
    if (stream->reset_) {
      // Nobody reads this stream any more: the payload is read and dropped.
      const auto room = decoder_.Prepare(std::min(left, kReadChunk));
      IoResult r = co_await transport_->ReadSome(asio::buffer(room.data(), room.size()));
      decoder_.Commit(r.ec ? 0 : r.bytes);
      if (EndedBy(r)) co_return;
      decoder_.Discard(r.bytes);
      left -= r.bytes;
      continue;
    }
    KernelPipe& sink = *stream->sink_;
    const KernelPipe::Move m = sink.FillFrom(fd, left);
    if (m.status == KernelPipe::Status::kMoved) {
      left -= m.bytes;
      spliced_bytes_ += m.bytes;
      stream->OnSinkData(m.bytes);
      continue;
    }
    if (m.status == KernelPipe::Status::kEnd) {
      Close("peer closed the connection");
      co_return;
    }
    if (m.status == KernelPipe::Status::kError) {
      Close("read failed: " + std::string(std::strerror(m.error)));
      co_return;
    }
    // Would block: the pipe is full (this stream's reader is behind) or the socket is empty.
    if (sink.Full()) {
      co_await sink.WaitWritable();
      continue;
    }
    boost::system::error_code ec;
    co_await tcp_->async_wait(tcp::socket::wait_read,
                              asio::redirect_error(asio::use_awaitable, ec));
    if (closed_) co_return;
    if (ec) {
      Close("read failed: " + ec.message());
      co_return;
    }
  }
  header_sized_read_ = true;
}

asio::awaitable<void> Connection::WriteToSink(MuxStream& stream, const std::uint8_t* data,
                                              std::size_t size) {
  while (size > 0 && !closed_ && !stream.reset_) {
    const KernelPipe::Move m = stream.sink_->Write(data, size);
    if (m.status == KernelPipe::Status::kMoved) {
      data += m.bytes;
      size -= m.bytes;
      stream.OnSinkData(m.bytes);
    } else if (m.status == KernelPipe::Status::kWouldBlock) {
      co_await stream.sink_->WaitWritable();
    } else {
      logger_->warn("{}: pipe write failed: {}", stream.Describe(), std::strerror(m.error));
      stream.Reset();
    }
  }
}

asio::awaitable<void> Connection::Dispatch(Frame&& frame) {
  if (auto* data = std::get_if<Data>(&frame)) {
    auto it = streams_.find(data->stream_id);
    if (it == streams_.end()) co_return;  // unknown or finished stream: dropped, as upstream
    auto stream = it->second;
    if (!WithinWindow(*stream, data->data.size())) co_return;
    // Upstream never sets end_of_stream and ignores it; CloseStream ends a stream.
    co_await Deliver(std::move(stream), std::move(data->data));
    co_return;
  }
  if (auto* open = std::get_if<OpenStream>(&frame)) {
    const bool peer_parity = (open->stream_id % 2 == 1) == options_.is_server;
    if (!peer_parity || open->stream_id == 0) {
      logger_->warn("ignoring OpenStream {} with this side's id parity", open->stream_id);
      co_return;
    }
    if (streams_.count(open->stream_id)) {
      logger_->warn("ignoring duplicate OpenStream {}", open->stream_id);
      co_return;
    }
    auto stream = std::make_shared<MuxStream>(shared_from_this(), open->stream_id, open->protocol,
                                              open->priority,
                                              options_.flow_control ? options_.stream_window : 0);
    if (streams_.size() >= options_.max_streams || !on_stream_) {
      logger_->warn("refusing stream {}: {} streams open", open->stream_id, streams_.size());
      Send(CloseStream{open->stream_id, {CloseReason::Kind::kError, "too many streams"}});
      co_return;
    }
    streams_[open->stream_id] = stream;
    stream_peak_ = std::max(stream_peak_, streams_.size());
    on_stream_(stream);
    co_return;
  }
  if (auto* close = std::get_if<CloseStream>(&frame)) {
    auto it = streams_.find(close->stream_id);
    if (it != streams_.end()) {
      auto stream = it->second;
      stream->OnClose(close->reason);
    }
    co_return;
  }
  if (auto* update = std::get_if<WindowUpdate>(&frame)) {
    if (!options_.flow_control) co_return;
    auto it = streams_.find(update->stream_id);
    if (it != streams_.end()) it->second->OnWindowUpdate(update->increment);
    co_return;
  }
  if (on_control_) on_control_(frame);
}

}  // namespace tunnelkit::ferro
