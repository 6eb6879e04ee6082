// What the two tunnelkit::Stream views of a data WebSocket share: the socket, a description for
// logs, and the reset / end-of-writes state. DataStream carries one public connection in
// tunnelkit's data frames; DataChannel carries raw bytes for the multiplexer (shared sockets).
#pragma once

#include <memory>
#include <string>
#include <utility>

#include "transport/data_socket.hpp"
#include "tunnelkit/stream.hpp"

namespace tunnelkit::zlayer::transport {

class DataSocketStream : public Stream {
 public:
  boost::asio::any_io_executor get_executor() override { return socket_->get_executor(); }
  std::string Describe() const override { return description_; }
  const std::shared_ptr<DataSocket>& socket() const { return socket_; }

 protected:
  DataSocketStream(std::shared_ptr<DataSocket> socket, std::string description)
      : socket_(std::move(socket)), description_(std::move(description)) {}

  std::shared_ptr<DataSocket> socket_;
  std::string description_;
  bool reset_ = false;
  bool write_closed_ = false;
};

}  // namespace tunnelkit::zlayer::transport
