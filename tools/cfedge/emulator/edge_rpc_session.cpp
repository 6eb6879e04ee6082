#include "emulator/edge_rpc_session.hpp"

#include <stdexcept>
#include <vector>

#include <kj/debug.h>

#include "cloudflare/tunnelrpc.capnp.h"

namespace tunnelkit::cloudflare::emulator {

namespace {

constexpr std::size_t kMaxLocalConfigBytes = 1024 * 1024;

capnp::ReaderOptions ControlStreamLimits() {
  capnp::ReaderOptions options;
  options.traversalLimitInWords = 2 * 1024 * 1024 / sizeof(capnp::word);  // 2 MiB per message
  options.nestingLimit = 32;
  return options;
}

}  // namespace

// The registrations made on one control stream. The RPC system keeps its bootstrap capability
// until the session is destroyed, so the session (not the capability) ends them when the
// stream goes away.
class EdgeRpcSession::Ledger {
 public:
  explicit Ledger(TunnelRegistry& registry) : registry(registry) {}
  struct Entry {
    Uuid tunnel_id;
    std::uint8_t conn_index;
    Uuid connection_id;
  };
  void UnregisterAll() {
    for (const auto& e : entries) registry.Unregister(e.tunnel_id, e.conn_index, e.connection_id);
    entries.clear();
  }
  TunnelRegistry& registry;
  std::vector<Entry> entries;
};

namespace {

class RegistrationServerImpl final : public rpc::RegistrationServer::Server {
 public:
  RegistrationServerImpl(std::shared_ptr<EdgeRpcSession::Ledger> ledger,
                         std::weak_ptr<EdgeConnection> connection)
      : ledger_(std::move(ledger)),
        registry_(ledger_->registry),
        connection_(std::move(connection)) {}

 protected:
  kj::Promise<void> registerConnection(RegisterConnectionContext context) override {
    RegistrationRequest request;
    try {
      request = ReadRegistrationParams(context.getParams());
    } catch (const std::invalid_argument& e) {
      return KJ_EXCEPTION(FAILED, "invalid registerConnection parameters", e.what());
    }
    RegistrationResult result = registry_.Register(request, connection_);
    if (result.registered) {
      ledger_->entries.push_back(
          {request.credentials.tunnel_id, request.conn_index, result.details.uuid});
    }
    WriteConnectionResponse(context.getResults().initResult(), result);
    return kj::READY_NOW;
  }

  kj::Promise<void> unregisterConnection(UnregisterConnectionContext) override {
    ledger_->UnregisterAll();
    return kj::READY_NOW;
  }

  kj::Promise<void> updateLocalConfiguration(UpdateLocalConfigurationContext context) override {
    auto config = context.getParams().getConfig();
    if (config.size() > kMaxLocalConfigBytes) {
      return KJ_EXCEPTION(FAILED, "local configuration is larger than 1 MiB");
    }
    // Informational only (as on the real edge for quick tunnels): acknowledged, not applied.
    if (registry_.on_event) {
      std::string tunnels;
      for (const auto& e : ledger_->entries) {
        tunnels += (tunnels.empty() ? "" : ",") + FormatUuid(e.tunnel_id);
      }
      registry_.on_event("config tunnel=" + (tunnels.empty() ? std::string("-") : tunnels) +
                         " bytes=" + std::to_string(config.size()));
    }
    return kj::READY_NOW;
  }

 private:
  std::shared_ptr<EdgeRpcSession::Ledger> ledger_;
  TunnelRegistry& registry_;
  std::weak_ptr<EdgeConnection> connection_;
};

class IgnoreErrors final : public kj::TaskSet::ErrorHandler {
 public:
  void taskFailed(kj::Exception&&) override {}
};

IgnoreErrors ignore_errors;

}  // namespace

EdgeRpcSession::EdgeRpcSession(AsioKjLoop& loop, TunnelRegistry& registry,
                               std::shared_ptr<Stream> control_stream,
                               std::weak_ptr<EdgeConnection> connection)
    : ledger_(std::make_shared<Ledger>(registry)),
      adapter_(std::move(control_stream)),
      network_(adapter_, capnp::rpc::twoparty::Side::SERVER, ControlStreamLimits()),
      rpc_system_(capnp::makeRpcServer(
          network_, kj::heap<RegistrationServerImpl>(ledger_, std::move(connection)))),
      disconnected_(network_.onDisconnect().fork()),
      tasks_(ignore_errors) {
  (void)loop;
  auto ledger = ledger_;
  tasks_.add(
      disconnected_.addBranch().then([ledger] { ledger->UnregisterAll(); },
                                     [ledger](kj::Exception&&) { ledger->UnregisterAll(); }));
}

EdgeRpcSession::~EdgeRpcSession() noexcept {
  ledger_->UnregisterAll();
}

}  // namespace tunnelkit::cloudflare::emulator
