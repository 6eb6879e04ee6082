#include "tunnelkit/stream/socket_stream.hpp"

#include <fmt/format.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "tunnelkit/stream/deadline.hpp"

namespace tunnelkit {

namespace asio = boost::asio;
using boost::system::error_code;

template <class Socket>
asio::awaitable<IoResult> BasicSocketStream<Socket>::ReadSome(asio::mutable_buffer buffer) {
  IoResult r;
  r.bytes =
      co_await socket_.async_read_some(buffer, asio::redirect_error(asio::use_awaitable, r.ec));
  co_return r;
}

template <class Socket>
asio::awaitable<IoResult> BasicSocketStream<Socket>::Write(asio::const_buffer buffer) {
  IoResult r;
  r.bytes =
      co_await asio::async_write(socket_, buffer, asio::redirect_error(asio::use_awaitable, r.ec));
  co_return r;
}

template <class Socket>
asio::awaitable<error_code> BasicSocketStream<Socket>::ShutdownWrite() {
  error_code ec;
  socket_.shutdown(Socket::shutdown_send, ec);
  co_return ec;
}

template <class Socket>
void BasicSocketStream<Socket>::Reset() {
  error_code ec;
  socket_.close(ec);
}

template class BasicSocketStream<asio::ip::tcp::socket>;
template class BasicSocketStream<asio::local::stream_protocol::socket>;

TcpStream::TcpStream(asio::ip::tcp::socket socket) : BasicSocketStream(std::move(socket)) {
  error_code ec;
  socket_.set_option(asio::ip::tcp::no_delay(true), ec);
}

void TcpStream::Reset() {
  error_code ec;
  if (socket_.is_open()) {
    // Linger 0: close sends RST instead of FIN, so the peer learns this was an abort.
    socket_.set_option(asio::socket_base::linger(true, 0), ec);
  }
  socket_.close(ec);
}

std::string DescribeTcpEndpoints(const asio::ip::tcp::socket& socket) {
  error_code ec1, ec2;
  auto local = socket.local_endpoint(ec1);
  auto remote = socket.remote_endpoint(ec2);
  if (ec1 || ec2) return "(closed)";
  return fmt::format("{}:{}->{}:{}", local.address().to_string(), local.port(),
                     remote.address().to_string(), remote.port());
}

std::string TcpStream::Describe() const {
  return "tcp " + DescribeTcpEndpoints(socket_);
}

UnixStream::UnixStream(asio::local::stream_protocol::socket socket)
    : BasicSocketStream(std::move(socket)) {}

std::string UnixStream::Describe() const {
  error_code ec;
  auto remote = socket_.remote_endpoint(ec);
  if (ec) return "unix (closed)";
  return "unix " + remote.path();
}

asio::awaitable<error_code> ConnectTcp(asio::ip::tcp::socket& socket, const std::string& host,
                                       const std::string& port, std::chrono::milliseconds timeout) {
  auto ex = socket.get_executor();
  asio::ip::tcp::resolver resolver(ex);
  Deadline deadline(ex);
  deadline.Arm(timeout, [&socket, &resolver] {
    resolver.cancel();
    error_code ignored;
    socket.close(ignored);
  });
  error_code ec;
  auto results =
      co_await resolver.async_resolve(host, port, asio::redirect_error(asio::use_awaitable, ec));
  if (!ec) {
    co_await asio::async_connect(socket, results, asio::redirect_error(asio::use_awaitable, ec));
  }
  if (deadline.fired()) {
    error_code ignored;
    socket.close(ignored);
    co_return asio::error::timed_out;
  }
  deadline.Cancel();
  if (!ec) socket.set_option(asio::ip::tcp::no_delay(true), ec);
  co_return ec;
}

asio::awaitable<std::unique_ptr<TcpStream>> ConnectTcpStream(asio::any_io_executor executor,
                                                             const std::string& host,
                                                             const std::string& port,
                                                             std::chrono::milliseconds timeout,
                                                             error_code& ec) {
  asio::ip::tcp::socket socket(executor);
  ec = co_await ConnectTcp(socket, host, port, timeout);
  if (ec) co_return nullptr;
  co_return std::make_unique<TcpStream>(std::move(socket));
}

asio::awaitable<std::unique_ptr<UnixStream>> ConnectUnixStream(asio::any_io_executor executor,
                                                               const std::string& path,
                                                               std::chrono::milliseconds timeout,
                                                               error_code& ec) {
  asio::local::stream_protocol::socket socket(executor);
  Deadline deadline(executor);
  deadline.Arm(timeout, [&socket] {
    error_code ignored;
    socket.close(ignored);
  });
  ec = {};
  co_await socket.async_connect(asio::local::stream_protocol::endpoint(path),
                                asio::redirect_error(asio::use_awaitable, ec));
  if (deadline.fired()) ec = asio::error::timed_out;
  deadline.Cancel();
  if (ec) co_return nullptr;
  co_return std::make_unique<UnixStream>(std::move(socket));
}

}  // namespace tunnelkit
