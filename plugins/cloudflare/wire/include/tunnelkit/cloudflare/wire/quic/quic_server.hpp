// A QUIC server on one UDP socket (tools/cfedge's edge). Datagrams are routed to connections
// by destination connection ID; a new Initial creates a connection.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/udp.hpp>

#include "tunnelkit/cloudflare/wire/quic/quic_connection.hpp"
#include "tunnelkit/cloudflare/wire/quic/quic_options.hpp"

namespace tunnelkit::cloudflare::quic {

class QuicServer {
 public:
  using ConnectionHandler = std::function<void(std::shared_ptr<QuicConnection>)>;

  // Loads the certificate and key, binds `listen` (port 0: ephemeral) and starts receiving.
  // `on_connection` is called, posted on `executor`, for every connection whose handshake
  // completed (failed handshakes are logged at debug level and dropped). The server keeps
  // each connection until it closes (peer close, idle timeout, QuicConnection::Close, or
  // QuicServer::Close). Throws QuicError naming the file or the address on failure.
  QuicServer(boost::asio::any_io_executor executor, boost::asio::ip::udp::endpoint listen,
             QuicServerOptions options, ConnectionHandler on_connection);
  ~QuicServer();  // Close()
  QuicServer(const QuicServer&) = delete;
  QuicServer& operator=(const QuicServer&) = delete;

  boost::asio::ip::udp::endpoint local_endpoint() const;
  // Connections not closed yet, including ones still in their handshake.
  std::size_t connection_count() const;
  // Closes every connection with the given application error code and stops listening.
  void Close(std::uint64_t app_error_code = 0, std::string_view reason = {});

 private:
  struct Core;
  std::shared_ptr<Core> core_;
};

}  // namespace tunnelkit::cloudflare::quic
