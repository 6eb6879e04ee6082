#include "emulator/quic_edge_connection.hpp"

#include "tunnelkit/cloudflare/wire/quic/quic_stream.hpp"

namespace tunnelkit::cloudflare::emulator {

QuicEdgeConnection::QuicEdgeConnection(std::shared_ptr<quic::QuicConnection> connection)
    : connection_(std::move(connection)), description_(connection_->Describe()) {}

QuicEdgeConnection::~QuicEdgeConnection() {
  connection_->Close(0);
}

boost::asio::awaitable<std::shared_ptr<Stream>> QuicEdgeConnection::OpenDataStream() {
  std::shared_ptr<quic::QuicStream> stream = co_await connection_->OpenStream();
  co_return stream;
}

void QuicEdgeConnection::Drop() {
  connection_->Close(0, "dropped by cfedge");
}

}  // namespace tunnelkit::cloudflare::emulator
