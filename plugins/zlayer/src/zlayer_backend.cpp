#include "zlayer_backend.hpp"

#include <spdlog/spdlog.h>

#include "tunnelkit/runtime.hpp"

namespace tunnelkit::zlayer {

const BackendInfo kBackendInfo{"zlayer", TUNNELKIT_VERSION_STRING, kRoleServer | kRoleLink | kRoleAccess,
                               "WebSocket node-to-node tunnels, ZLayer control channel"};

namespace {

class ZlayerBackend final : public Backend {
 public:
  int Run(Runtime& runtime) override {
    runtime.logger()->error("the zlayer protocol is not built yet in this version of tunnelkit");
    return 2;
  }
};

}  // namespace

std::unique_ptr<Backend> MakeZlayerBackend() { return std::make_unique<ZlayerBackend>(); }

}  // namespace tunnelkit::zlayer
