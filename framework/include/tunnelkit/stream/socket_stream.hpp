// Stream adapters over plain sockets: TcpStream (TCP, TCP_NODELAY on) and UnixStream (AF_UNIX
// stream sockets), plus connect helpers with a timeout.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>

#include "tunnelkit/stream.hpp"

namespace tunnelkit {

// Common implementation for stream sockets; half-close is shutdown(send), Reset is an
// abortive close (SO_LINGER 0 on TCP, so the peer sees RST).
template <class Socket>
class BasicSocketStream : public Stream {
 public:
  explicit BasicSocketStream(Socket socket) : socket_(std::move(socket)) {}

  boost::asio::any_io_executor get_executor() override { return socket_.get_executor(); }
  boost::asio::awaitable<IoResult> ReadSome(boost::asio::mutable_buffer buffer) override;
  boost::asio::awaitable<IoResult> Write(boost::asio::const_buffer buffer) override;
  boost::asio::awaitable<boost::system::error_code> ShutdownWrite() override;
  void Reset() override;

  Socket& socket() { return socket_; }

 protected:
  Socket socket_;
};

class TcpStream final : public BasicSocketStream<boost::asio::ip::tcp::socket> {
 public:
  // Takes a connected socket and turns on TCP_NODELAY.
  explicit TcpStream(boost::asio::ip::tcp::socket socket);
  void Reset() override;
  std::string Describe() const override;
  boost::asio::ip::tcp::socket* plain_tcp_socket() override { return &socket_; }
};

class UnixStream final : public BasicSocketStream<boost::asio::local::stream_protocol::socket> {
 public:
  explicit UnixStream(boost::asio::local::stream_protocol::socket socket);
  std::string Describe() const override;
  boost::asio::local::stream_protocol::socket* plain_unix_socket() override { return &socket_; }
};

// "127.0.0.1:5000->127.0.0.1:8080" (local->remote), or "(closed)", for logs.
std::string DescribeTcpEndpoints(const boost::asio::ip::tcp::socket& socket);

// Resolves host:port and connects to the first address that answers, within `timeout`
// (boost::asio::error::timed_out after it). TCP_NODELAY is set on success.
boost::asio::awaitable<boost::system::error_code> ConnectTcp(boost::asio::ip::tcp::socket& socket,
                                                             const std::string& host,
                                                             const std::string& port,
                                                             std::chrono::milliseconds timeout);

// Same, returning a ready TcpStream (null on error, with `ec` set).
boost::asio::awaitable<std::unique_ptr<TcpStream>> ConnectTcpStream(
    boost::asio::any_io_executor executor, const std::string& host, const std::string& port,
    std::chrono::milliseconds timeout, boost::system::error_code& ec);

boost::asio::awaitable<std::unique_ptr<UnixStream>> ConnectUnixStream(
    boost::asio::any_io_executor executor, const std::string& path,
    std::chrono::milliseconds timeout, boost::system::error_code& ec);

extern template class BasicSocketStream<boost::asio::ip::tcp::socket>;
extern template class BasicSocketStream<boost::asio::local::stream_protocol::socket>;

}  // namespace tunnelkit
