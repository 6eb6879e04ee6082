// Exports of libtunnelkit_zlayer.so: nothing else of the backend is visible outside this folder.
#include "zlayer_backend.hpp"

TUNNELKIT_DECLARE_BACKEND(tunnelkit::zlayer::kBackendInfo, tunnelkit::zlayer::MakeZlayerBackend)
