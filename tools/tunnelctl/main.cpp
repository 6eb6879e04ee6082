// tunnelctl: expose local services through tunnels. Dispatches on the subcommand word.
#include <cstdio>
#include <exception>
#include <string>

#include "commands.hpp"

namespace {

constexpr const char* kUsage =
    "usage:\n"
    "  tunnelctl --backend NAME [flags]          run a tunnel client (expose --url)\n"
    "  tunnelctl serve --backend NAME [flags]    run a tunnel server\n"
    "  tunnelctl link --backend NAME [flags]     keep node-to-node links up\n"
    "  tunnelctl access --backend NAME [flags]   forward a local port through a tunnel\n"
    "  tunnelctl backends [--plugin-dir DIR]     list installed backends\n"
    "  tunnelctl hello --listen ADDR             run the built-in hello-world origin\n"
    "  tunnelctl version\n"
    "common flags: --config FILE --check --log-level L --log-format text|json\n"
    "              --metrics ADDR --plugin-dir DIR --url URL --id NAME --grace-period 30s\n"
    "every configuration field is a flag (docs/configuration.md)\n";

}  // namespace

int main(int argc, char** argv) {
  tunnelctl::Args args(argv + 1, argv + argc);
  std::string command = "run";
  bool implicit_run = true;  // no subcommand word: the mode may come from the file
  if (!args.empty() && !args.front().empty() && args.front()[0] != '-') {
    implicit_run = false;
    command = args.front();
    args.erase(args.begin());
  }
  try {
    if (command == "help" ||
        (command == "run" && !args.empty() && (args.front() == "--help" || args.front() == "-h"))) {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (command == "version") {
      std::printf("tunnelctl %s\n", TUNNELKIT_VERSION_STRING);
      return 0;
    }
    if (command == "backends") return tunnelctl::RunBackends(args);
    if (command == "hello") return tunnelctl::RunHello(args);
    if (command == "run" || command == "serve" || command == "link" || command == "access") {
      return tunnelctl::RunTunnel(implicit_run ? "" : command, args);
    }
    std::fprintf(stderr, "tunnelctl: unknown command '%s' (try tunnelctl help)\n", command.c_str());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tunnelctl: %s\n", e.what());
    return 1;
  }
}
