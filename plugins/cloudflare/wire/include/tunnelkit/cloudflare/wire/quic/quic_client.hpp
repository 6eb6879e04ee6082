// Dialing a QUIC server (the Cloudflare edge, or tools/cfedge).
#pragma once

#include <memory>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/udp.hpp>

#include "tunnelkit/cloudflare/wire/quic/quic_connection.hpp"
#include "tunnelkit/cloudflare/wire/quic/quic_options.hpp"

namespace tunnelkit::cloudflare::quic {

class QuicClient {
 public:
  // Opens a UDP socket connected to `remote`, runs the handshake (ALPN, SNI, certificate
  // verification per `options`) and returns the established connection. Throws QuicError with
  // a one-line what(): "TLS verification failed: <reason>", "TLS handshake failed: peer sent
  // alert no_application_protocol (0x178)", "QUIC handshake timed out after 5000 ms", or an
  // option error naming the field. The connection lives as long as a handle (the returned
  // pointer or one of its streams) does; dropping the last one closes it with code 0.
  static boost::asio::awaitable<std::shared_ptr<QuicConnection>> Connect(
      boost::asio::any_io_executor executor, boost::asio::ip::udp::endpoint remote,
      QuicClientOptions options);
};

}  // namespace tunnelkit::cloudflare::quic
