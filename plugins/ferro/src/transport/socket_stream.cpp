#include "transport/socket_stream.hpp"

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace tunnelkit::ferro {

namespace asio = boost::asio;

std::string DescribeEndpoints(const asio::ip::tcp::socket& socket) {
  boost::system::error_code ec1;
  boost::system::error_code ec2;
  const auto local = socket.local_endpoint(ec1);
  const auto remote = socket.remote_endpoint(ec2);
  if (ec1 || ec2) return "(closed)";
  auto text = [](const asio::ip::tcp::endpoint& e) {
    return e.address().to_string() + ":" + std::to_string(e.port());
  };
  return text(local) + "<->" + text(remote);
}

asio::awaitable<IoResult> TcpSocketStream::ReadSome(asio::mutable_buffer buffer) {
  IoResult r;
  r.bytes =
      co_await socket_.async_read_some(buffer, asio::redirect_error(asio::use_awaitable, r.ec));
  co_return r;
}

asio::awaitable<IoResult> TcpSocketStream::Write(asio::const_buffer buffer) {
  IoResult r;
  r.bytes =
      co_await asio::async_write(socket_, buffer, asio::redirect_error(asio::use_awaitable, r.ec));
  co_return r;
}

asio::awaitable<IoResult> TcpSocketStream::WriteGather(
    std::span<const asio::const_buffer> buffers) {
  IoResult r;
  r.bytes =
      co_await asio::async_write(socket_, buffers, asio::redirect_error(asio::use_awaitable, r.ec));
  co_return r;
}

asio::awaitable<boost::system::error_code> TcpSocketStream::ShutdownWrite() {
  boost::system::error_code ec;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
  co_return ec;
}

void TcpSocketStream::Reset() {
  boost::system::error_code ec;
  socket_.close(ec);
}

}  // namespace tunnelkit::ferro
