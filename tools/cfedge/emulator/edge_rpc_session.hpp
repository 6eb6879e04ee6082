// The edge emulator's side of one control stream: two-party Cap'n Proto RPC serving
// RegistrationServer as the bootstrap capability (promise pipelining included, as the Go client
// needs). Registrations made on it end with unregisterConnection or when the stream goes away.
#pragma once

#include <memory>
#include <string>

#include <capnp/rpc-twoparty.h>

#include "emulator/tunnel_registry.hpp"
#include "tunnelkit/cloudflare/wire/kjasio/asio_kj_loop.hpp"
#include "tunnelkit/cloudflare/wire/kjasio/stream_kj_adapter.hpp"

namespace tunnelkit::cloudflare::emulator {

class EdgeRpcSession {
 public:
  // `registry` and `loop` outlive the session. `connection` identifies the client connection in
  // the routing table.
  EdgeRpcSession(AsioKjLoop& loop, TunnelRegistry& registry, std::shared_ptr<Stream> control_stream,
                 std::weak_ptr<EdgeConnection> connection);
  ~EdgeRpcSession() noexcept;

  // Resolves when the client closes the control stream or it breaks.
  kj::Promise<void> OnDisconnect() { return disconnected_.addBranch(); }

  class Ledger;

 private:
  std::shared_ptr<Ledger> ledger_;
  StreamKjAdapter adapter_;
  capnp::TwoPartyVatNetwork network_;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc_system_;
  kj::ForkedPromise<void> disconnected_;
  kj::TaskSet tasks_;
};

}  // namespace tunnelkit::cloudflare::emulator
