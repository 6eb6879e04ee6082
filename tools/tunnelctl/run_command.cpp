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

namespace pb = google::protobuf;

void PrintIssue(const tunnelkit::config::Issue& issue) {
  std::fprintf(stderr, "tunnelctl: config: %s\n", issue.Describe().c_str());
}

std::string FlagType(const pb::FieldDescriptor* field) {
  if (field->is_map()) return "KEY=VALUE...";
  std::string type;
  if (field->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE)
    type = "DURATION";
  else if (field->cpp_type() == pb::FieldDescriptor::CPPTYPE_BOOL)
    type = "[=true|false]";
  else if (field->cpp_type() == pb::FieldDescriptor::CPPTYPE_STRING)
    type = "TEXT";
  else if (field->cpp_type() == pb::FieldDescriptor::CPPTYPE_ENUM)
    type = "NAME";
  else
    type = "NUMBER";
  if (field->is_repeated()) type += "...";
  return type;
}

// Lists the flags that reach each field of `type` (reflection: the same rule the loader
// uses), skipping lists of messages, which only a file can set.
void PrintFlags(const pb::Descriptor* type, const std::string& prefix, bool skip_backends) {
  for (int i = 0; i < type->field_count(); ++i) {
    const auto* field = type->field(i);
    std::string name = prefix + field->name();
    for (auto& c : name) {
      if (c == '_') c = '-';
    }
    const bool message = field->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE &&
                         field->message_type()->full_name() != "google.protobuf.Duration" &&
                         !field->is_map();
    if (message) {
      if (field->is_repeated() || (skip_backends && field->number() >= 20)) continue;
      PrintFlags(field->message_type(), name + "-", false);
      continue;
    }
    std::printf("  --%-36s %s\n", name.c_str(), FlagType(field).c_str());
  }
}

void PrintHelp(const std::string& backend) {
  std::fputs(
      "usage: tunnelctl [serve|link|access] --backend NAME [--config FILE] [--check] [flags]\n"
      "Every field of the configuration is a flag: --foo-bar sets foo_bar of the core\n"
      "(tunnel.proto) or, failing that, of the backend's message (docs/configuration.md).\n"
      "  --config FILE                          YAML or JSON file; flags override it\n"
      "  --check                                print the effective configuration and exit\n"
      "core:\n",
      stdout);
  const auto* tunnel = tunnelkit::config::v1::Tunnel::descriptor();
  PrintFlags(tunnel, "", true);
  const auto* field = backend.empty() ? nullptr : tunnel->FindFieldByName(backend);
  if (field && field->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
    std::printf("%s:\n", backend.c_str());
    PrintFlags(field->message_type(), "", false);
  } else {
    std::fputs("(add --backend NAME to list that backend's flags)\n", stdout);
  }
}

}  // namespace

int RunTunnel(const std::string& mode, const Args& args) {
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--help" || args[i] == "-h") {
      std::string backend;
      for (std::size_t k = 0; k + 1 < args.size(); ++k) {
        if (args[k] == "--backend") backend = args[k + 1];
      }
      PrintHelp(backend);
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
