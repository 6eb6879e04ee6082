// One bidirectional QUIC stream as a tunnelkit::Stream.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "tunnelkit/cloudflare/wire/quic/quic_connection.hpp"
#include "tunnelkit/stream.hpp"

namespace tunnelkit::cloudflare::quic {

// Errors: reads report boost::asio::error::eof after the peer's FIN; QuicErrc::kStreamReset
// after the peer's RESET_STREAM; writes report QuicErrc::kStopSending after the peer's
// STOP_SENDING; after a local Reset() both report QuicErrc::kStreamClosed; when the connection
// ends, everything reports its close_info().ec (kPeerClosed, kIdleTimeout, ...).
//
// Dropping the last handle of a stream that is still open resets the directions that are not
// finished (RESET_STREAM if ShutdownWrite was not called, STOP_SENDING if the FIN was not
// received), with application error code 0. The handle keeps its connection alive.
class QuicStream final : public tunnelkit::Stream {
 public:
  QuicStream(std::shared_ptr<QuicConnection> connection,
             std::shared_ptr<detail::StreamState> state);
  ~QuicStream() override;

  boost::asio::any_io_executor get_executor() override;
  // Reads buffered data; returns as soon as at least one byte is available. Reading is what
  // opens the peer's flow-control window.
  boost::asio::awaitable<IoResult> ReadSome(boost::asio::mutable_buffer buffer) override;
  // Copies the buffer and returns once at most 128 KiB of the stream (this buffer included)
  // is not yet in packets, so a writer fetches its next buffer while this one is sent. The copy
  // lives until the peer acknowledges it. An error that comes after a write has returned (the
  // peer's STOP_SENDING, the connection's end) is reported by the next Write/ShutdownWrite.
  boost::asio::awaitable<IoResult> Write(boost::asio::const_buffer buffer) override;
  // Sends FIN after the data written so far.
  boost::asio::awaitable<boost::system::error_code> ShutdownWrite() override;
  // RESET_STREAM + STOP_SENDING with application error code 0.
  void Reset() override { Reset(0); }
  void Reset(std::uint64_t app_error_code);
  std::string Describe() const override;

  std::int64_t id() const;
  QuicConnection& connection() const { return *connection_; }

 private:
  std::shared_ptr<QuicConnection> connection_;
  std::shared_ptr<detail::StreamState> state_;
};

}  // namespace tunnelkit::cloudflare::quic
