// tunnelkit::Stream over an Asio TCP socket, for the plain control connection, public ingress
// connections and origin connections (TLS: the core TlsStream).
#pragma once

#include <span>
#include <string>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>

#include "tunnelkit/stream.hpp"

namespace tunnelkit::ferro {

std::string DescribeEndpoints(const boost::asio::ip::tcp::socket& socket);

class TcpSocketStream final : public Stream {
 public:
  explicit TcpSocketStream(boost::asio::ip::tcp::socket socket) : socket_(std::move(socket)) {}

  boost::asio::any_io_executor get_executor() override { return socket_.get_executor(); }
  boost::asio::awaitable<IoResult> ReadSome(boost::asio::mutable_buffer buffer) override;
  boost::asio::awaitable<IoResult> Write(boost::asio::const_buffer buffer) override;
  boost::asio::awaitable<boost::system::error_code> ShutdownWrite() override;
  void Reset() override;
  std::string Describe() const override { return "tcp " + DescribeEndpoints(socket_); }

  // Writes every buffer, in order, with gathered writes (no joining copy).
  boost::asio::awaitable<IoResult> WriteGather(std::span<const boost::asio::const_buffer> buffers);

  boost::asio::ip::tcp::socket& socket() { return socket_; }

 private:
  boost::asio::ip::tcp::socket socket_;
};

}  // namespace tunnelkit::ferro
