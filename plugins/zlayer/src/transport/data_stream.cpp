#include "transport/data_stream.hpp"

#include <algorithm>

#include <boost/asio/error.hpp>

namespace tunnelkit::zlayer::transport {

namespace asio = boost::asio;

DataStream::DataStream(std::shared_ptr<DataSocket> socket, std::string description)
    : DataSocketStream(std::move(socket), std::move(description)) {}

DataStream::~DataStream() = default;

asio::awaitable<IoResult> DataStream::ReadSome(asio::mutable_buffer buffer) {
  if (buffer.size() == 0) co_return IoResult{};
  for (;;) {
    if (reset_) co_return IoResult{asio::error::operation_aborted, 0};
    if (read_eof_) co_return IoResult{asio::error::eof, 0};
    if (in_message_) {
      // The sender wrote the message whole, so its rest is on the way: fill the buffer (or end
      // the message) rather than hand out the few bytes Beast read along with the header.
      std::size_t got = 0;
      auto* out = static_cast<char*>(buffer.data());
      while (in_message_ && got < buffer.size()) {
        const auto r = co_await socket_->ReadSome(asio::buffer(out + got, buffer.size() - got));
        if (r.ec) co_return IoResult{asio::error::connection_reset, 0};
        if (r.message_done) in_message_ = false;
        got += r.bytes;
      }
      if (got > 0) co_return IoResult{{}, got};
      continue;
    }
    // A message starts: its first byte says what it is.
    std::uint8_t kind = 0;
    const auto r = co_await socket_->ReadSome(asio::buffer(&kind, 1));
    if (r.ec) {
      // The socket went away without an end-of-writes frame: the peer aborted.
      co_return IoResult{asio::error::connection_reset, 0};
    }
    if (r.bytes == 0) {
      if (r.message_done) continue;  // an empty message: nothing to say
      continue;
    }
    if (kind == static_cast<std::uint8_t>(codec::DataFrameKind::kFin)) {
      if (!r.message_done) {
        socket_->Close();
        co_return IoResult{asio::error::invalid_argument, 0};
      }
      read_eof_ = true;
      continue;
    }
    if (kind != static_cast<std::uint8_t>(codec::DataFrameKind::kData)) {
      socket_->Close();  // a datagram or an unknown kind on a TCP stream
      co_return IoResult{asio::error::invalid_argument, 0};
    }
    in_message_ = !r.message_done;
  }
}

asio::awaitable<IoResult> DataStream::Write(asio::const_buffer buffer) {
  if (reset_ || write_closed_) co_return IoResult{asio::error::broken_pipe, 0};
  static constexpr std::uint8_t kData[1] = {static_cast<std::uint8_t>(codec::DataFrameKind::kData)};
  const auto* bytes = static_cast<const std::uint8_t*>(buffer.data());
  std::size_t done = 0;
  while (done < buffer.size()) {
    const std::size_t n = std::min(codec::kMaxDataFramePayload, buffer.size() - done);
    const auto ec =
        co_await socket_->WriteMessage(asio::buffer(kData), asio::buffer(bytes + done, n));
    if (ec) co_return IoResult{asio::error::connection_reset, done};
    done += n;
  }
  co_return IoResult{{}, done};
}

asio::awaitable<boost::system::error_code> DataStream::ShutdownWrite() {
  if (reset_) co_return asio::error::operation_aborted;
  if (write_closed_) co_return boost::system::error_code{};
  write_closed_ = true;
  static constexpr std::uint8_t kFin[1] = {static_cast<std::uint8_t>(codec::DataFrameKind::kFin)};
  if (co_await socket_->WriteMessage(asio::buffer(kFin))) co_return asio::error::connection_reset;
  co_return boost::system::error_code{};
}

void DataStream::Reset() {
  reset_ = true;
  socket_->Close();
}

}  // namespace tunnelkit::zlayer::transport
