// Builds the typed configuration of one tunnel (tunnelkit::config::v1::Tunnel) from a YAML or
// JSON file and command-line flags, with protobuf reflection so that a field added to any
// backend's message is reachable from files and flags without code here.
//
// Mapping rules (docs/configuration.md has the full text):
//  - file: keys are field names (snake_case; camelCase and kebab-case are accepted too),
//    nested messages are maps, repeated fields are lists, Durations are "500ms"/"1h30m" or
//    numbers of seconds.
//  - flags: "--foo-bar V" or "--foo-bar=V" sets the Tunnel field foo_bar; words may walk into
//    nested messages ("--log-level" sets log.level, "--reconnect-base" sets reconnect.base);
//    otherwise the field foo_bar of the selected backend's message (Tunnel.<backend>).
//    Bool fields take a bare flag or "=true/false"; repeated fields append.
//  - flags override the file; then core defaults are filled and core checks run.
// Usage:
//   tunnelkit::config::BuildOptions options;
//   options.mode = "run";
//   options.args = {"--backend", "ferro", "--server", "127.0.0.1:7835"};
//   auto result = tunnelkit::config::BuildConfig(options);
//   if (!result.ok()) for (auto& issue : result.issues) std::cerr << issue.Describe() << "\n";
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tunnelkit/config/v1/tunnel.pb.h"
#include "tunnelkit/plugin.hpp"

namespace tunnelkit::config {

// A configuration problem. `path` is the field path ("ferro.listen", "ingress[1].service",
// "--no-such-flag" for an unknown flag); file problems also carry the file and 1-based line.
struct Issue : ConfigIssue {
  std::string file;
  int line = 0;
  // "FILE:LINE: PATH: REASON" or "PATH: REASON"
  std::string Describe() const;
};

struct BuildOptions {
  std::string mode = "run";  // run | serve | link | access; written to Tunnel.mode
  // Arguments after the subcommand word. --config FILE and --check are taken here; every
  // other flag maps onto a field.
  std::vector<std::string> args;
  // Fill the core's defaults (log level, grace period, backoff, ...). On for tunnelctl.
  bool fill_defaults = true;
};

struct BuildResult {
  config::v1::Tunnel config;
  std::vector<Issue> issues;
  bool check = false;       // --check was given
  std::string config_file;  // --config FILE, empty when none
  // Field path -> (file, line) where the file set it; fields set by flags map to ("", 0).
  std::map<std::string, std::pair<std::string, int>> origins;
  bool ok() const { return issues.empty(); }
  // An issue found later (Backend::Validate) with the file and line of its field, if any.
  Issue Locate(const ConfigIssue& issue) const;
};

// File, then flags, then defaults, then ValidateCore. Never throws on bad input.
BuildResult BuildConfig(const BuildOptions& options);

// The building blocks, for tools and tests that need finer control. One loader builds one
// message; issues accumulate.
class ConfigLoader {
 public:
  ConfigLoader();

  // Merges a YAML/JSON document. `source` names it in issues (usually the file path).
  void MergeText(std::string_view text, const std::string& source);
  // Reads and merges a file (a missing or unreadable file is an issue naming it).
  void MergeFile(const std::filesystem::path& file);
  // Applies flags (no --config/--check here). The backend for backend flags is the one named
  // by a --backend among `args`, else the message's backend field.
  void ApplyFlags(const std::vector<std::string>& args);
  // Sets one field by its dotted path ("ferro.listen", "log.level") from text, as a flag does.
  void Set(const std::string& path, const std::string& value);

  void FillDefaults();
  // Runs ValidateCore on the message; issues for fields that came from the file name its line.
  void Validate();

  const config::v1::Tunnel& config() const { return config_; }
  config::v1::Tunnel& mutable_config() { return config_; }
  const std::vector<Issue>& issues() const { return issues_; }
  const std::map<std::string, std::pair<std::string, int>>& origins() const { return origins_; }
  // Adds issues from elsewhere (Backend::Validate), attaching the file and line when the path
  // was set by the file.
  void AddIssues(const std::vector<ConfigIssue>& issues);

 private:
  friend struct LoaderAccess;
  config::v1::Tunnel config_;
  std::vector<Issue> issues_;
  // Field path -> where the file set it (so later checks can name the line).
  std::map<std::string, std::pair<std::string, int>> origins_;
};

// Core checks of a complete message: log level/format, mode, addresses, URLs, durations,
// ranges. Backend-specific checks belong to Backend::Validate.
std::vector<ConfigIssue> ValidateCore(const config::v1::Tunnel& tunnel);

// Fills the defaults the core defines (only where a field is unset).
void FillCoreDefaults(config::v1::Tunnel& tunnel);

// The message as YAML, with only set fields, Durations as "1m30s" and secrets (fields named
// token, secret, password or ending in _token/_secret) shown as "***".
std::string RenderYaml(const google::protobuf::Message& message, bool mask_secrets = true);

// Address and URL checks shared with backends. Each returns an empty string when the value is
// fine, else the reason ("port out of range 1..65535").
// HOST:PORT or [v6]:PORT; min_port is 0 for listeners that accept an ephemeral port.
std::string CheckHostPort(std::string_view value, int min_port = 1);
// scheme://host[:port][/path]; `schemes` lists the accepted schemes ("ws", "wss").
std::string CheckUrl(std::string_view value, const std::vector<std::string>& schemes);
// An ingress service: http(s)://, tcp://, ws(s)://, unix:PATH, hello_world, http_status:N.
std::string CheckService(std::string_view value);

// True when a field of this name holds a secret (masked in output, never logged).
bool IsSecretField(std::string_view name);

}  // namespace tunnelkit::config
