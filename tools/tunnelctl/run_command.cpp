#include <cstdio>

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "commands.hpp"
#include "tunnelkit/plugin_loader.hpp"
#include "tunnelkit/runtime.hpp"

namespace tunnelctl {

int RunTunnel(const std::string& mode, const Args& args) {
  CLI::App app{"run a tunnel", "tunnelctl"};
  std::string backend_name;
  std::vector<std::string> plugin_dirs;
  app.add_option("--backend", backend_name, "backend to use")->required();
  app.add_option("--plugin-dir", plugin_dirs, "extra folder to search for backends");
  try {
    std::vector<std::string> reversed(args.rbegin(), args.rend());
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    std::fprintf(stderr, "tunnelctl: %s\n", e.what());
    return 2;
  }

  tunnelkit::PluginLoader loader(tunnelkit::PluginLoader::DefaultSearchPath(plugin_dirs));
  tunnelkit::PluginDescriptor descriptor;
  tunnelkit::PluginError error;
  auto backend = loader.Load(backend_name, descriptor, error);
  if (!backend) {
    std::fprintf(stderr, "tunnelctl: %s\n", error.Describe().c_str());
    return 2;
  }
  tunnelkit::config::v1::Tunnel config;
  config.set_backend(backend_name);
  config.set_mode(mode);
  auto logger = spdlog::stderr_color_mt(backend_name);
  tunnelkit::Runtime runtime(config, logger, nullptr);
  runtime.WatchSignals();
  return backend->Run(runtime);
}

}  // namespace tunnelctl
