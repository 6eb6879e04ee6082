#include "ferro_backend.hpp"

#include <spdlog/spdlog.h>

#include "tunnelkit/runtime.hpp"

namespace tunnelkit::ferro {

const BackendInfo kBackendInfo{"ferro", TUNNELKIT_VERSION_STRING, kRoleClient | kRoleServer,
                               "self-hosted TCP/TLS multiplexed tunnel, FerroTunnel 1.x wire"};

namespace {

class FerroBackend final : public Backend {
 public:
  int Run(Runtime& runtime) override {
    runtime.logger()->error("the ferro protocol is not built yet in this version of tunnelkit");
    return 2;
  }
};

}  // namespace

std::unique_ptr<Backend> MakeFerroBackend() { return std::make_unique<FerroBackend>(); }

}  // namespace tunnelkit::ferro
