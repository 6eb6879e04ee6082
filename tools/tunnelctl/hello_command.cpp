#include <cstdio>

#include "commands.hpp"

namespace tunnelctl {

int RunHello(const Args&) {
  std::fprintf(stderr, "tunnelctl hello: the hello-world origin is not built yet\n");
  return 2;
}

}  // namespace tunnelctl
