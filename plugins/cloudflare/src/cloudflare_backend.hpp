#pragma once

#include <memory>

#include "tunnelkit/plugin.hpp"

namespace tunnelkit::cloudflare {

extern const BackendInfo kBackendInfo;
std::unique_ptr<Backend> MakeCloudflareBackend();

}  // namespace tunnelkit::cloudflare
