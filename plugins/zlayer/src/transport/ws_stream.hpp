// tunnelkit::Stream over one data WebSocket (after DataAttach): every binary message is a data
// frame (codec/extension.hpp). Half-close is an end-of-writes frame; Reset closes the socket.
#pragma once

#include <memory>
#include <vector>

#include "transport/ws_connection.hpp"
#include "tunnelkit/stream.hpp"

namespace tunnelkit::zlayer::transport {

class WsStream final : public Stream {
 public:
  // Largest payload put in one message by Write.
  static constexpr std::size_t kChunk = 64 * 1024;

  WsStream(boost::asio::any_io_executor executor, std::shared_ptr<WsConnection> connection,
           std::string description);
  ~WsStream() override;

  boost::asio::any_io_executor get_executor() override { return executor_; }
  boost::asio::awaitable<IoResult> ReadSome(boost::asio::mutable_buffer buffer) override;
  boost::asio::awaitable<IoResult> Write(boost::asio::const_buffer buffer) override;
  boost::asio::awaitable<boost::system::error_code> ShutdownWrite() override;
  void Reset() override;
  std::string Describe() const override { return description_; }

  const std::shared_ptr<WsConnection>& connection() const { return connection_; }

 private:
  boost::asio::any_io_executor executor_;
  std::shared_ptr<WsConnection> connection_;
  std::string description_;
  std::vector<std::uint8_t> pending_;  // the current message's unread payload
  std::size_t pending_offset_ = 0;
  bool read_eof_ = false;
  bool write_closed_ = false;
  bool reset_ = false;
};

}  // namespace tunnelkit::zlayer::transport
