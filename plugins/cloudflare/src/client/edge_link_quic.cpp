// The QUIC edge link. The QUIC transport (plugins/cloudflare/src/quic) is being written in
// parallel; until it is merged this build has no QUIC and says so.
#include <stdexcept>

#include "client/edge_link.hpp"

namespace tunnelkit::cloudflare {

boost::asio::awaitable<std::unique_ptr<EdgeLink>> DialQuicEdge(boost::asio::any_io_executor,
                                                               const EdgeAddress& address,
                                                               const EdgeDialOptions&) {
  throw std::runtime_error("this build has no QUIC transport yet (edge " + address.Describe() +
                           "); use a tcp:// edge address with cfedge --tcp-listen");
  co_return nullptr;
}

}  // namespace tunnelkit::cloudflare
