#include "transport/socket_copy.hpp"

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace tunnelkit::zlayer::transport {

namespace asio = boost::asio;

asio::awaitable<IoResult> CopySocketToStream(TcpStream& from, Stream& to,
                                             BufferPool& (*buffers)()) {
  std::uint64_t total = 0;
  Chunk buffer;
  for (;;) {
    if (!buffer) {
      boost::system::error_code ec;
      co_await from.socket().async_wait(asio::ip::tcp::socket::wait_read,
                                        asio::redirect_error(asio::use_awaitable, ec));
      buffer = buffers().Acquire();
    }
    auto space = buffer.writable();
    const auto r = co_await from.ReadSome(asio::buffer(space.data(), space.size()));
    if (r.ec) co_return IoResult{r.ec, total};
    const auto w = co_await to.Write(asio::buffer(space.data(), r.bytes));
    total += w.bytes;
    if (w.ec) co_return IoResult{w.ec, total};
    if (r.bytes < space.size()) buffer = Chunk();  // drained for now
  }
}

}  // namespace tunnelkit::zlayer::transport
