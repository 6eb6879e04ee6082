// A TCP echo origin on 127.0.0.1 for the zlayer tests: echoes what each connection sends,
// and half-closes when the connection's sender does.
#pragma once

#include <cstddef>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace tunnelkit::test {

struct TcpEcho {
  // `buffer_size`: each connection's read buffer (small when a test measures memory per
  // connection, so that the origin's own cost does not blur the figure).
  explicit TcpEcho(boost::asio::io_context& io, std::size_t buffer_size = 64 * 1024)
      : acceptor(io, {boost::asio::ip::make_address("127.0.0.1"), 0}), buffer_size(buffer_size) {
    boost::asio::co_spawn(io, Loop(), boost::asio::detached);
  }
  int port() const { return acceptor.local_endpoint().port(); }

  boost::asio::awaitable<void> Loop() {
    namespace asio = boost::asio;
    for (;;) {
      boost::system::error_code ec;
      auto socket = co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return;
      asio::co_spawn(
          acceptor.get_executor(),
          [s = std::move(socket), size = buffer_size]() mutable -> asio::awaitable<void> {
            std::vector<char> buf(size);
            for (;;) {
              boost::system::error_code rec;
              const auto n = co_await s.async_read_some(
                  asio::buffer(buf), asio::redirect_error(asio::use_awaitable, rec));
              if (rec) break;
              co_await asio::async_write(s, asio::buffer(buf.data(), n),
                                         asio::redirect_error(asio::use_awaitable, rec));
              if (rec) break;
            }
            boost::system::error_code sec;
            s.shutdown(asio::ip::tcp::socket::shutdown_send, sec);
          },
          asio::detached);
    }
  }

  boost::asio::ip::tcp::acceptor acceptor;
  std::size_t buffer_size;
};

}  // namespace tunnelkit::test
