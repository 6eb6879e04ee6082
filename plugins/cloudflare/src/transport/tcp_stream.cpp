#include "transport/tcp_stream.hpp"

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace tunnelkit::cloudflare {

namespace {

std::string Endpoint(const boost::asio::ip::tcp::endpoint& endpoint) {
  auto address = endpoint.address();
  std::string host = address.is_v6() ? "[" + address.to_string() + "]" : address.to_string();
  return host + ":" + std::to_string(endpoint.port());
}

}  // namespace

TcpStream::TcpStream(boost::asio::ip::tcp::socket socket) : socket_(std::move(socket)) {
  boost::system::error_code ec;
  auto local = socket_.local_endpoint(ec);
  auto remote = socket_.remote_endpoint(ec);
  description_ = ec ? "tcp (unconnected)" : "tcp " + Endpoint(local) + "->" + Endpoint(remote);
  socket_.set_option(boost::asio::ip::tcp::no_delay(true), ec);
}

boost::asio::awaitable<IoResult> TcpStream::ReadSome(boost::asio::mutable_buffer buffer) {
  IoResult result;
  result.bytes = co_await socket_.async_read_some(
      buffer, boost::asio::redirect_error(boost::asio::use_awaitable, result.ec));
  co_return result;
}

boost::asio::awaitable<IoResult> TcpStream::Write(boost::asio::const_buffer buffer) {
  IoResult result;
  result.bytes = co_await boost::asio::async_write(
      socket_, buffer, boost::asio::redirect_error(boost::asio::use_awaitable, result.ec));
  co_return result;
}

boost::asio::awaitable<boost::system::error_code> TcpStream::ShutdownWrite() {
  boost::system::error_code ec;
  socket_.shutdown(boost::asio::ip::tcp::socket::shutdown_send, ec);
  co_return ec;
}

void TcpStream::Reset() {
  boost::system::error_code ec;
  if (!socket_.is_open()) return;
  socket_.set_option(boost::asio::socket_base::linger(true, 0), ec);
  socket_.close(ec);
}

}  // namespace tunnelkit::cloudflare
