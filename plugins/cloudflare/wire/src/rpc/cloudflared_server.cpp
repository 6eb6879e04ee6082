#include "tunnelkit/cloudflare/wire/rpc/cloudflared_server.hpp"

#include <capnp/rpc-twoparty.h>
#include <spdlog/spdlog.h>

#include "cloudflare/tunnelrpc.capnp.h"
#include "tunnelkit/cloudflare/wire/kjasio/stream_kj_adapter.hpp"

namespace tunnelkit::cloudflare {

namespace {

class CloudflaredServerImpl final : public rpc::CloudflaredServer::Server {
 public:
  explicit CloudflaredServerImpl(std::shared_ptr<spdlog::logger> logger)
      : logger_(std::move(logger)) {}

 protected:
  kj::Promise<void> registerUdpSession(RegisterUdpSessionContext context) override {
    logger_->info("edge asked for a UDP session; refused: {}", kUdpRefusal);
    context.getResults().initResult().setErr(kUdpRefusal);
    return kj::READY_NOW;
  }
  kj::Promise<void> unregisterUdpSession(UnregisterUdpSessionContext) override {
    return kj::READY_NOW;
  }
  kj::Promise<void> updateConfiguration(UpdateConfigurationContext context) override {
    logger_->info("edge pushed a configuration (version {}); refused: {}",
                  context.getParams().getVersion(), kConfigRefusal);
    auto result = context.getResults().initResult();
    result.setLatestAppliedVersion(-1);
    result.setErr(kConfigRefusal);
    return kj::READY_NOW;
  }

 private:
  std::shared_ptr<spdlog::logger> logger_;
};

capnp::ReaderOptions RpcStreamLimits() {
  capnp::ReaderOptions options;
  options.traversalLimitInWords = 1024 * 1024 / sizeof(capnp::word);  // 1 MiB per message
  options.nestingLimit = 16;
  return options;
}

struct Session {
  Session(std::shared_ptr<Stream> stream, std::shared_ptr<spdlog::logger> logger)
      : adapter(std::move(stream)),
        network(adapter, capnp::rpc::twoparty::Side::SERVER, RpcStreamLimits()),
        rpc_system(capnp::makeRpcServer(network, kj::heap<CloudflaredServerImpl>(logger))) {}
  StreamKjAdapter adapter;
  capnp::TwoPartyVatNetwork network;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc_system;
};

}  // namespace

boost::asio::awaitable<void> ServeCloudflaredRpc(AsioKjLoop& loop, std::shared_ptr<Stream> stream,
                                                 std::chrono::milliseconds limit,
                                                 std::shared_ptr<spdlog::logger> logger) {
  auto raw = stream;
  // Owned by the loop: if this frame is destroyed after the loop (the io_context shutting down
  // with the stream still open), the loop has already destroyed the session, and with it the
  // stream handle (which keeps its QUIC connection alive).
  auto session = loop.Adopt(std::make_unique<Session>(std::move(stream), logger));
  try {
    // Named, not a temporary inside the co_await expression (g++ 12 destroys those twice).
    kj::Promise<void> ended =
        loop.WithTimeout(session->network.onDisconnect(), limit, "RPC stream from the edge");
    co_await AwaitKjVoid(loop, std::move(ended));
  } catch (const std::exception& e) {
    logger->debug("RPC stream from the edge ended: {}", e.what());
  }
  session.Reset();
  raw->Reset();
}

}  // namespace tunnelkit::cloudflare
