// The QUIC edge listener: ALPN argotunnel, the certificate for quic.cftunnel.com; the first
// bidirectional stream a client opens is its control stream.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <cstdio>
#include <stdexcept>

#include "edge_server.hpp"
#include "emulator/quic_edge_connection.hpp"
#include "tunnelkit/cloudflare/wire/quic/quic_error.hpp"
#include "tunnelkit/cloudflare/wire/quic/quic_server.hpp"
#include "tunnelkit/cloudflare/wire/quic/quic_stream.hpp"

namespace tunnelkit::cloudflare::cfedge {

namespace asio = boost::asio;

namespace {

asio::awaitable<void> ServeConnection(EdgeServer& server,
                                      std::shared_ptr<quic::QuicConnection> connection) {
  auto control = co_await connection->AcceptStream();
  if (!control) co_return;
  server.ServeControlStream(control, std::make_shared<emulator::QuicEdgeConnection>(connection));
}

asio::ip::udp::endpoint ParseUdp(const std::string& text) {
  auto endpoint = ParseListen(text, "--quic-listen");
  return asio::ip::udp::endpoint(endpoint.address(), endpoint.port());
}

}  // namespace

struct EdgeServer::QuicListener {
  std::unique_ptr<quic::QuicServer> server;
};

std::shared_ptr<EdgeServer::QuicListener> StartQuicListener(EdgeServer& server,
                                                            asio::io_context& io,
                                                            const std::string& listen) {
  quic::QuicServerOptions options;
  options.cert_file = server.cert_file();
  options.key_file = server.key_file();
  auto listener = std::make_shared<EdgeServer::QuicListener>();
  listener->server = std::make_unique<quic::QuicServer>(
      io.get_executor(), ParseUdp(listen), options,
      [&server, &io](std::shared_ptr<quic::QuicConnection> connection) {
        asio::co_spawn(io, ServeConnection(server, std::move(connection)), asio::detached);
      });
  auto endpoint = listener->server->local_endpoint();
  auto address = endpoint.address();
  std::string host = address.is_v6() ? "[" + address.to_string() + "]" : address.to_string();
  std::fprintf(stdout, "edge quic %s:%u\n", host.c_str(), endpoint.port());
  std::fflush(stdout);
  return listener;
}

void CloseQuicListener(EdgeServer::QuicListener& listener) {
  if (listener.server) listener.server->Close(0);
}

}  // namespace tunnelkit::cloudflare::cfedge
