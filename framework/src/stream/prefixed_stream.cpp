#include "tunnelkit/stream/prefixed_stream.hpp"

#include <algorithm>
#include <cstring>

namespace tunnelkit {

PrefixedStream::PrefixedStream(Stream& inner, std::vector<std::uint8_t> prefix)
    : inner_(inner), prefix_(std::move(prefix)) {}

boost::asio::awaitable<IoResult> PrefixedStream::ReadSome(boost::asio::mutable_buffer buffer) {
  if (head_ < prefix_.size()) {
    std::size_t n = std::min(buffer.size(), prefix_.size() - head_);
    std::memcpy(buffer.data(), prefix_.data() + head_, n);
    head_ += n;
    if (head_ == prefix_.size()) {
      prefix_.clear();
      prefix_.shrink_to_fit();
      head_ = 0;
    }
    co_return IoResult{{}, n};
  }
  co_return co_await inner_.ReadSome(buffer);
}

boost::asio::awaitable<IoResult> PrefixedStream::Write(boost::asio::const_buffer buffer) {
  co_return co_await inner_.Write(buffer);
}

boost::asio::awaitable<boost::system::error_code> PrefixedStream::ShutdownWrite() {
  co_return co_await inner_.ShutdownWrite();
}

}  // namespace tunnelkit
