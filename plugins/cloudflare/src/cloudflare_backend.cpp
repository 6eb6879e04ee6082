#include "cloudflare_backend.hpp"

#include <spdlog/spdlog.h>

#include "tunnelkit/runtime.hpp"

namespace tunnelkit::cloudflare {

const BackendInfo kBackendInfo{"cloudflare", TUNNELKIT_VERSION_STRING, kRoleClient,
                               "Cloudflare quick tunnels over QUIC and Cap'n Proto RPC"};

namespace {

class CloudflareBackend final : public Backend {
 public:
  int Run(Runtime& runtime) override {
    runtime.logger()->error("the cloudflare protocol is not built yet in this version of tunnelkit");
    return 2;
  }
};

}  // namespace

std::unique_ptr<Backend> MakeCloudflareBackend() { return std::make_unique<CloudflareBackend>(); }

}  // namespace tunnelkit::cloudflare
