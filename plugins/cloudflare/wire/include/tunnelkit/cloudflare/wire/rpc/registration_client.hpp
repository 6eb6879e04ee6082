// The client's side of the control stream (specs/cloudflare.md section 4): two-party Cap'n Proto
// RPC on the first bidirectional stream, no preamble, the client asks for the edge's bootstrap
// capability and calls RegistrationServer methods on it. Calls made before the bootstrap
// resolves are pipelined on the bootstrap question, as cloudflared does. The client offers no
// bootstrap capability of its own (an edge Bootstrap gets an exception, as with cloudflared).
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include <capnp/rpc-twoparty.h>
#include <boost/asio/awaitable.hpp>

#include "cloudflare/tunnelrpc.capnp.h"
#include "tunnelkit/cloudflare/wire/kjasio/asio_kj_loop.hpp"
#include "tunnelkit/cloudflare/wire/kjasio/stream_kj_adapter.hpp"
#include "tunnelkit/cloudflare/wire/rpc/registration_types.hpp"

namespace tunnelkit::cloudflare {

class RegistrationClient {
 public:
  // `loop` must outlive the client; the stream is the control stream.
  RegistrationClient(AsioKjLoop& loop, std::shared_ptr<Stream> control_stream,
                     std::chrono::milliseconds rpc_timeout = std::chrono::seconds(5));
  ~RegistrationClient() noexcept;

  // Throws KjError when the RPC fails (stream closed, timeout, edge exception).
  boost::asio::awaitable<RegistrationResult> Register(const RegistrationRequest& request);
  boost::asio::awaitable<void> UpdateLocalConfiguration(std::string config_json);
  boost::asio::awaitable<void> Unregister(std::chrono::milliseconds deadline);

  // The KJ promise of Register, for callers living in KJ (tests of pipelining).
  kj::Promise<RegistrationResult> RegisterPromise(const RegistrationRequest& request);

  // Resolves when the RPC connection ends (stream closed or broken).
  kj::Promise<void> OnDisconnect() { return client_.onDisconnect(); }

 private:
  AsioKjLoop& loop_;
  std::chrono::milliseconds rpc_timeout_;
  StreamKjAdapter adapter_;
  capnp::TwoPartyClient client_;
  rpc::RegistrationServer::Client server_;
};

}  // namespace tunnelkit::cloudflare
