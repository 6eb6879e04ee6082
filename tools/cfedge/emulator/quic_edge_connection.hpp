// A client's QUIC connection as the edge emulator sees it: data streams are bidirectional
// streams the edge opens on it, and dropping it sends CONNECTION_CLOSE.
#pragma once

#include <memory>
#include <string>

#include "emulator/tunnel_registry.hpp"
#include "tunnelkit/cloudflare/wire/quic/quic_connection.hpp"

namespace tunnelkit::cloudflare::emulator {

class QuicEdgeConnection final : public EdgeConnection {
 public:
  explicit QuicEdgeConnection(std::shared_ptr<quic::QuicConnection> connection);
  ~QuicEdgeConnection() override;  // closes the connection with code 0
  std::string Describe() const override { return description_; }
  // The QUIC connection's OpenStream (throws QuicError once it is closed).
  boost::asio::awaitable<std::shared_ptr<Stream>> OpenDataStream() override;
  void Drop() override;

  quic::QuicConnection& connection() const { return *connection_; }

 private:
  std::shared_ptr<quic::QuicConnection> connection_;
  std::string description_;
};

}  // namespace tunnelkit::cloudflare::emulator
