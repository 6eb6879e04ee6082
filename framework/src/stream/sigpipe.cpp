#include "tunnelkit/stream/sigpipe.hpp"

#include <csignal>
#include <mutex>

namespace tunnelkit {

void IgnoreBrokenPipeSignal() {
  static std::once_flag once;
  std::call_once(once, [] { std::signal(SIGPIPE, SIG_IGN); });
}

}  // namespace tunnelkit
