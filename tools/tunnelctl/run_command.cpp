// tunnelctl [serve|link|access] --backend NAME [--config FILE] [flags] [--check]
// Configuration is built and checked completely (core, then the backend's Validate) before
// anything starts; every problem is one line on stderr and the exit status is 2.
#include <cstdio>
#include <string>

#include <spdlog/spdlog.h>

#include "commands.hpp"
#include "tunnelkit/config/config_loader.hpp"
#include "tunnelkit/logging.hpp"
#include "tunnelkit/plugin_loader.hpp"
#include "tunnelkit/runtime.hpp"

namespace tunnelctl {

namespace {

void PrintIssue(const tunnelkit::config::Issue& issue) {
  std::fprintf(stderr, "tunnelctl: config: %s\n", issue.Describe().c_str());
}

}  // namespace

int RunTunnel(const std::string& mode, const Args& args) {
  for (const auto& arg : args) {
    if (arg == "--help" || arg == "-h") {
      std::fputs(
          "usage: tunnelctl [serve|link|access] --backend NAME [--config FILE] [--check] [flags]\n"
          "Every field of the configuration is a flag: --foo-bar sets foo_bar of the core\n"
          "(tunnel.proto) or, failing that, of the backend's message (e.g. ferro.proto).\n"
          "See docs/configuration.md.\n",
          stdout);
      return 0;
    }
  }
  tunnelkit::config::BuildOptions options;
  options.mode = mode;
  options.args = args;
  auto built = tunnelkit::config::BuildConfig(options);
  if (!built.ok()) {
    for (const auto& issue : built.issues) PrintIssue(issue);
    return 2;
  }
  auto& config = built.config;

  std::vector<std::string> plugin_dirs(config.plugin_dir().begin(), config.plugin_dir().end());
  tunnelkit::PluginLoader loader(tunnelkit::PluginLoader::DefaultSearchPath(plugin_dirs));
  tunnelkit::PluginDescriptor descriptor;
  tunnelkit::PluginError error;
  auto backend = loader.Load(config.backend(), descriptor, error);
  if (!backend) {
    std::fprintf(stderr, "tunnelctl: %s\n", error.Describe().c_str());
    return 2;
  }
  std::vector<tunnelkit::ConfigIssue> backend_issues;
  backend->Validate(config, backend_issues);
  if (!backend_issues.empty()) {
    for (const auto& issue : backend_issues) PrintIssue(built.Locate(issue));
    return 2;
  }
  if (built.check) {
    std::fputs(tunnelkit::config::RenderYaml(config).c_str(), stdout);
    return 0;
  }

  tunnelkit::logging::Options log_options;
  log_options.level = *tunnelkit::logging::ParseLevel(config.log().level());
  log_options.format = *tunnelkit::logging::ParseFormat(config.log().format());
  tunnelkit::logging::Configure(log_options);

  tunnelkit::Runtime runtime(config);
  if (auto admin_error = runtime.StartAdmin(); !admin_error.empty()) {
    std::fprintf(stderr, "tunnelctl: admin: %s\n", admin_error.c_str());
    return 2;
  }
  runtime.WatchSignals();
  return backend->Run(runtime);
}

}  // namespace tunnelctl
