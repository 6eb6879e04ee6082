#pragma once

#include <memory>

#include "tunnelkit/plugin.hpp"

namespace tunnelkit::zlayer {

extern const BackendInfo kBackendInfo;
std::unique_ptr<Backend> MakeZlayerBackend();

}  // namespace tunnelkit::zlayer
