#include <cstdio>

#include <CLI/CLI.hpp>

#include "commands.hpp"
#include "tunnelkit/plugin_loader.hpp"

namespace tunnelctl {

int RunBackends(const Args& args) {
  CLI::App app{"list installed backends", "tunnelctl backends"};
  std::vector<std::string> plugin_dirs;
  app.add_option("--plugin-dir", plugin_dirs, "extra folder to search first");
  try {
    std::vector<std::string> reversed(args.rbegin(), args.rend());
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    std::fprintf(stderr, "tunnelctl backends: %s\n", e.what());
    return 2;
  }
  tunnelkit::PluginLoader loader(tunnelkit::PluginLoader::DefaultSearchPath(plugin_dirs));
  std::vector<tunnelkit::PluginError> errors;
  auto plugins = loader.Discover(errors);
  std::printf("%-12s %-9s %-24s %s\n", "BACKEND", "VERSION", "ROLES", "FILE");
  for (const auto& plugin : plugins) {
    std::printf("%-12s %-9s %-24s %s\n", plugin.name.c_str(), plugin.version.c_str(),
                tunnelkit::RoleNames(plugin.roles).c_str(), plugin.file.c_str());
  }
  for (const auto& error : errors) {
    std::fprintf(stderr, "tunnelctl: %s\n", error.Describe().c_str());
  }
  if (plugins.empty() && errors.empty()) {
    std::fprintf(stderr,
                 "tunnelctl: no backends found (searched --plugin-dir, "
                 "TUNNELKIT_PLUGIN_PATH, the build tree and the install prefix)\n");
    return 2;
  }
  return errors.empty() ? 0 : 2;
}

}  // namespace tunnelctl
