#include "tunnelkit/cloudflare/wire/quic/quic_client.hpp"

namespace tunnelkit::cloudflare::quic {

boost::asio::awaitable<std::shared_ptr<QuicConnection>> QuicClient::Connect(
    boost::asio::any_io_executor executor, boost::asio::ip::udp::endpoint remote,
    QuicClientOptions options) {
  auto connection = QuicConnection::CreateClient(executor, remote, options);
  co_await connection->WaitHandshake();
  co_return connection;
}

}  // namespace tunnelkit::cloudflare::quic
