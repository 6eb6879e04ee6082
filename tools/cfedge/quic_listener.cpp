// The QUIC edge listener. The QUIC transport (plugins/cloudflare/src/quic) is being written in
// parallel; until it is merged, --quic-listen is refused at start-up.
#include <stdexcept>

#include "edge_server.hpp"

namespace tunnelkit::cloudflare::cfedge {

struct EdgeServer::QuicListener {};

std::shared_ptr<EdgeServer::QuicListener> StartQuicListener(EdgeServer&, boost::asio::io_context&,
                                                            const std::string& listen) {
  throw std::runtime_error("--quic-listen " + listen +
                           ": this build has no QUIC transport yet (use --tcp-listen)");
}

void CloseQuicListener(EdgeServer::QuicListener&) {}

}  // namespace tunnelkit::cloudflare::cfedge
