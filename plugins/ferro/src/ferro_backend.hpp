#pragma once

#include <memory>

#include "tunnelkit/plugin.hpp"

namespace tunnelkit::ferro {

extern const BackendInfo kBackendInfo;
std::unique_ptr<Backend> MakeFerroBackend();

}  // namespace tunnelkit::ferro
