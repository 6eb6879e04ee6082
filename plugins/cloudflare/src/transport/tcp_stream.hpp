// tunnelkit::Stream over a TCP socket. The cloudflare backend uses it for tests and for the
// edge emulator's plain-TCP control listener (the RPC stack runs over any Stream; QUIC streams
// replace it on the real wire).
#pragma once

#include <string>

#include <boost/asio/ip/tcp.hpp>

#include "tunnelkit/stream.hpp"

namespace tunnelkit::cloudflare {

class TcpStream final : public Stream {
 public:
  explicit TcpStream(boost::asio::ip::tcp::socket socket);

  boost::asio::any_io_executor get_executor() override { return socket_.get_executor(); }
  boost::asio::awaitable<IoResult> ReadSome(boost::asio::mutable_buffer buffer) override;
  boost::asio::awaitable<IoResult> Write(boost::asio::const_buffer buffer) override;
  boost::asio::awaitable<boost::system::error_code> ShutdownWrite() override;
  void Reset() override;
  std::string Describe() const override { return description_; }

  boost::asio::ip::tcp::socket& socket() { return socket_; }

 private:
  boost::asio::ip::tcp::socket socket_;
  std::string description_;
};

}  // namespace tunnelkit::cloudflare
