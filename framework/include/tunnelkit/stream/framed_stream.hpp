// FramedStream: what a multiplexed stream offers beyond tunnelkit::Stream, for Splice's fast
// paths (Stream::framed() returns it; no dynamic_cast):
//   - whole payloads: a received Data payload handed over as it arrived (moved, not copied),
//     and a frame built in the caller's buffer with room left for the header in front;
//   - the kernel path on a session over plain TCP: payloads spliced between a TCP socket and
//     the session's socket through a KernelPipe, the frame headers written and read by the
//     process, the payload bytes never in user space. Same bytes on the wire.
#pragma once

#include <cstddef>
#include <memory>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "tunnelkit/stream.hpp"
#include "tunnelkit/stream/kernel_pipe.hpp"
#include "tunnelkit/stream/uninit_bytes.hpp"

namespace tunnelkit {

class FramedStream {
 public:
  virtual ~FramedStream() = default;

  // ---- Whole payloads -------------------------------------------------------------------
  // True when ReadPiece would not wait (bytes buffered, or the stream ended or failed).
  virtual bool readable() const = 0;
  // Completes once readable(): a reader takes a buffer only when there is something for it.
  virtual boost::asio::awaitable<void> WaitReadable() = 0;
  // The next received payload as it arrived; ends (eof, reset) as ReadSome does.
  virtual boost::asio::awaitable<IoResult> ReadPiece(UninitBytes& piece) = 0;
  // ReadPiece's part that needs no waiting: false (and `piece` untouched) when it would wait.
  virtual bool TryReadPiece(UninitBytes& piece, IoResult& result) = 0;

  // Bytes a frame buffer keeps free in front of its payload for the header.
  virtual std::size_t frame_header_room() const = 0;
  // Most payload bytes in one frame; WriteFrame splits (and copies) larger ones.
  virtual std::size_t max_frame_payload() const = 0;
  // Sends `frame` (frame_header_room() bytes of room, then the payload) as one Data frame.
  virtual boost::asio::awaitable<IoResult> WriteFrame(UninitBytes&& frame) = 0;
  // WriteFrame's part that needs no waiting: false, and `frame` untouched, when it would wait.
  virtual bool TryWriteFrame(UninitBytes& frame, IoResult& result) = 0;

  // ---- Kernel path (only where can_splice()) ----------------------------------------------
  virtual bool can_splice() const = 0;
  // Moves what `socket` has now into one Data frame through `pipe` (empty, the caller's) and
  // waits until it is written; eof once the socket's peer finished sending.
  virtual boost::asio::awaitable<IoResult> SpliceFrom(boost::asio::ip::tcp::socket& socket,
                                                      std::shared_ptr<KernelPipe> pipe) = 0;
  // From now on received payloads collect in `pipe`. Refused (false) while bytes are buffered
  // in memory, so that they stay in order: read those first.
  virtual bool AttachSink(std::shared_ptr<KernelPipe> pipe) = 0;
  // Moves received bytes from the sink into `socket`: how many, or eof / reset as ReadSome.
  virtual boost::asio::awaitable<IoResult> SpliceTo(boost::asio::ip::tcp::socket& socket) = 0;
};

}  // namespace tunnelkit
