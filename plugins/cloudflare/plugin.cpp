// Exports of libtunnelkit_cloudflare.so: nothing else of the backend is visible outside this
// folder.
#include "cloudflare_backend.hpp"

TUNNELKIT_DECLARE_BACKEND(tunnelkit::cloudflare::kBackendInfo,
                          tunnelkit::cloudflare::MakeCloudflareBackend)
