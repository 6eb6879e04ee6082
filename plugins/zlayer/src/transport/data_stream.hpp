// tunnelkit::Stream over one data-plane socket (after DataAttach): every message is a data
// frame (codec/extension.hpp). Payload is read straight into the caller's buffer; a Write
// becomes one message per kMaxDataFramePayload bytes. Half-close is an end-of-writes frame;
// Reset closes the socket.
#pragma once

#include <memory>
#include <string>

#include "transport/data_socket_stream.hpp"
#include "tunnelkit/stream.hpp"

namespace tunnelkit::zlayer::transport {

// Splice buffer for a public connection <-> data stream: large reads make large messages (one
// frame header and one extra read per message); pooled, so only while bytes move.
inline constexpr std::size_t kDataSpliceBuffer = 256 * 1024;

class DataStream final : public DataSocketStream {
 public:
  DataStream(std::shared_ptr<DataSocket> socket, std::string description);
  ~DataStream() override;

  boost::asio::awaitable<IoResult> ReadSome(boost::asio::mutable_buffer buffer) override;
  boost::asio::awaitable<IoResult> Write(boost::asio::const_buffer buffer) override;
  boost::asio::awaitable<boost::system::error_code> ShutdownWrite() override;
  void Reset() override;

  // True once both ends of the stream were exchanged cleanly (then Finish, not Reset).
  bool finished_cleanly() const { return read_eof_ && write_closed_ && !reset_; }
  // The end-of-writes frame was read by someone else (data_splice's zero-copy reader).
  void MarkReadEof() { read_eof_ = true; }

 private:
  bool in_message_ = false;  // inside a data message's payload
  bool read_eof_ = false;
};

}  // namespace tunnelkit::zlayer::transport
