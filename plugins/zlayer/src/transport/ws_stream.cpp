#include "transport/ws_stream.hpp"

#include <algorithm>
#include <cstring>

#include <boost/asio/error.hpp>

#include "codec/extension.hpp"

namespace tunnelkit::zlayer::transport {

namespace asio = boost::asio;

WsStream::WsStream(asio::any_io_executor executor, std::shared_ptr<WsConnection> connection,
                   std::string description)
    : executor_(std::move(executor)),
      connection_(std::move(connection)),
      description_(std::move(description)) {}

WsStream::~WsStream() {
  connection_->Close();
}

asio::awaitable<IoResult> WsStream::ReadSome(asio::mutable_buffer buffer) {
  if (reset_) co_return IoResult{asio::error::operation_aborted, 0};
  while (pending_offset_ >= pending_.size()) {
    if (read_eof_) co_return IoResult{asio::error::eof, 0};
    auto message = co_await connection_->Receive();
    if (!message) {
      // The socket went away without an end-of-writes frame: the peer aborted.
      co_return IoResult{asio::error::connection_reset, 0};
    }
    const auto frame = codec::DecodeDataFrame(*message);
    if (!frame.ok || frame.frame.kind == codec::DataFrameKind::kDatagram) {
      connection_->Close();
      co_return IoResult{asio::error::invalid_argument, 0};
    }
    if (frame.frame.kind == codec::DataFrameKind::kFin) {
      read_eof_ = true;
      continue;
    }
    // Keep the message and skip its 1-byte header instead of copying the payload again.
    pending_ = std::move(*message);
    pending_offset_ = codec::kDataFrameHeaderSize;
  }
  const std::size_t n = std::min(buffer.size(), pending_.size() - pending_offset_);
  std::memcpy(buffer.data(), pending_.data() + pending_offset_, n);
  pending_offset_ += n;
  if (pending_offset_ >= pending_.size()) {
    std::vector<std::uint8_t>().swap(pending_);  // an idle stream keeps no message
    pending_offset_ = 0;
  }
  co_return IoResult{{}, n};
}

asio::awaitable<IoResult> WsStream::Write(asio::const_buffer buffer) {
  if (reset_ || write_closed_) co_return IoResult{asio::error::broken_pipe, 0};
  static constexpr std::uint8_t kData[1] = {static_cast<std::uint8_t>(codec::DataFrameKind::kData)};
  const auto* bytes = static_cast<const std::uint8_t*>(buffer.data());
  std::size_t done = 0;
  while (done < buffer.size()) {
    const std::size_t n = std::min(kChunk, buffer.size() - done);
    if (!co_await connection_->Send(kData, std::span(bytes + done, n))) {
      co_return IoResult{asio::error::connection_reset, done};
    }
    done += n;
  }
  co_return IoResult{{}, done};
}

asio::awaitable<boost::system::error_code> WsStream::ShutdownWrite() {
  if (reset_) co_return asio::error::operation_aborted;
  if (write_closed_) co_return boost::system::error_code{};
  write_closed_ = true;
  static constexpr std::uint8_t kFin[1] = {static_cast<std::uint8_t>(codec::DataFrameKind::kFin)};
  if (!co_await connection_->Send(kFin)) co_return asio::error::connection_reset;
  co_return boost::system::error_code{};
}

void WsStream::Reset() {
  reset_ = true;
  connection_->Close();
}

}  // namespace tunnelkit::zlayer::transport
