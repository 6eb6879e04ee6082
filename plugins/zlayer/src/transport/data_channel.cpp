#include "transport/data_channel.hpp"

#include <algorithm>

#include <boost/asio/error.hpp>
#include <boost/beast/websocket/error.hpp>

#include "codec/mux_codec.hpp"

namespace tunnelkit::zlayer::transport {

namespace asio = boost::asio;

mux::MuxConfig SharedChannelConfig(mux::IdParity ids, std::size_t max_streams, std::string label) {
  mux::MuxConfig config;
  config.local_ids = ids;
  config.wire_flow_control = true;
  config.max_streams = max_streams;
  config.max_pending_accept = max_streams;  // a crowd of clients opens at once
  // Data frames as large as the wire allows (64 KiB): fewer frames and headers per byte.
  config.chunk_size = codec::kMuxMaxDataPayload;
  config.pool_max_free = 8;
  config.max_frame_size = codec::kMuxMaxFrame;
  config.label = std::move(label);
  return config;
}

DataChannel::DataChannel(std::shared_ptr<DataSocket> socket, std::string description)
    : DataSocketStream(std::move(socket), std::move(description)) {}

DataChannel::~DataChannel() = default;

asio::awaitable<IoResult> DataChannel::ReadSome(asio::mutable_buffer buffer) {
  if (buffer.size() == 0) co_return IoResult{};
  for (;;) {
    if (reset_) co_return IoResult{asio::error::operation_aborted, 0};
    const auto r = co_await socket_->ReadSome(buffer);
    if (r.ec) {
      // A WebSocket close or a TCP/TLS end is the peer finishing; anything else is an error.
      if (r.ec == boost::beast::websocket::error::closed || r.ec == asio::error::eof) {
        co_return IoResult{asio::error::eof, 0};
      }
      co_return IoResult{r.ec, 0};
    }
    if (r.bytes > 0) co_return IoResult{{}, r.bytes};
    // An empty message (or an empty piece of one): nothing to hand out, read on.
  }
}

asio::awaitable<IoResult> DataChannel::Write(asio::const_buffer buffer) {
  if (reset_ || write_closed_) co_return IoResult{asio::error::broken_pipe, 0};
  const auto* bytes = static_cast<const std::uint8_t*>(buffer.data());
  std::size_t done = 0;
  while (done < buffer.size()) {
    const std::size_t n = std::min(kMaxDataMessage, buffer.size() - done);
    const auto ec = co_await socket_->WriteMessage(asio::buffer(bytes + done, n));
    if (ec) co_return IoResult{ec, done};
    done += n;
  }
  co_return IoResult{{}, done};
}

asio::awaitable<boost::system::error_code> DataChannel::ShutdownWrite() {
  if (reset_) co_return asio::error::operation_aborted;
  if (write_closed_) co_return boost::system::error_code{};
  write_closed_ = true;
  co_await socket_->Finish();
  co_return boost::system::error_code{};
}

void DataChannel::Reset() {
  reset_ = true;
  socket_->Close();
}

}  // namespace tunnelkit::zlayer::transport
