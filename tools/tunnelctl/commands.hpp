// tunnelctl's subcommands. Each returns the process exit status: 0 ok, 1 runtime failure,
// 2 usage or configuration error (nothing was started).
#pragma once

#include <string>
#include <vector>

namespace tunnelctl {

// Arguments after the subcommand word, argv[0] excluded.
using Args = std::vector<std::string>;

int RunBackends(const Args& args);
// mode: run | serve | link | access
int RunTunnel(const std::string& mode, const Args& args);
int RunHello(const Args& args);

}  // namespace tunnelctl
