#include "tunnelkit/cloudflare/wire/quic/quic_stream.hpp"

namespace tunnelkit::cloudflare::quic {

namespace asio = boost::asio;

QuicStream::QuicStream(std::shared_ptr<QuicConnection> connection,
                       std::shared_ptr<detail::StreamState> state)
    : connection_(std::move(connection)), state_(std::move(state)) {}

QuicStream::~QuicStream() {
  connection_->StreamRelease(*state_);
}

asio::any_io_executor QuicStream::get_executor() {
  return connection_->get_executor();
}

asio::awaitable<IoResult> QuicStream::ReadSome(asio::mutable_buffer buffer) {
  auto [ec, n] = co_await connection_->StreamRead(state_, buffer);
  co_return IoResult{ec, n};
}

asio::awaitable<IoResult> QuicStream::Write(asio::const_buffer buffer) {
  auto [ec, n] = co_await connection_->StreamWrite(state_, buffer);
  co_return IoResult{ec, n};
}

asio::awaitable<boost::system::error_code> QuicStream::ShutdownWrite() {
  co_return connection_->StreamShutdownWrite(*state_);
}

void QuicStream::Reset(std::uint64_t app_error_code) {
  connection_->StreamReset(*state_, app_error_code);
}

std::string QuicStream::Describe() const {
  return connection_->Describe() + " stream " + std::to_string(state_->id);
}

std::int64_t QuicStream::id() const {
  return state_->id;
}

}  // namespace tunnelkit::cloudflare::quic
