// Exports of libtunnelkit_ferro.so: nothing else of the backend is visible outside this folder.
#include "ferro_backend.hpp"

TUNNELKIT_DECLARE_BACKEND(tunnelkit::ferro::kBackendInfo, tunnelkit::ferro::MakeFerroBackend)
