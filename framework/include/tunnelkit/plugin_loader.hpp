// Finds backend plugins on disk and loads them, turning every failure into one line of text.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tunnelkit/plugin.hpp"

namespace tunnelkit {

struct PluginDescriptor {
  std::string name;
  std::string version;
  std::uint32_t roles = 0;
  std::string summary;
  std::filesystem::path file;
};

// A plugin that could not be used, with the file and the reason ("not a plugin: ...").
struct PluginError {
  std::filesystem::path file;
  std::string reason;
  std::string Describe() const;  // "plugin FILE: REASON"
};

class PluginLoader {
 public:
  // Search order: explicit dirs (--plugin-dir), TUNNELKIT_PLUGIN_PATH (colon separated), the
  // build tree, the install prefix, and <exe>/../lib/tunnelkit.
  static std::vector<std::filesystem::path> DefaultSearchPath(
      const std::vector<std::string>& explicit_dirs);

  explicit PluginLoader(std::vector<std::filesystem::path> search_path);

  // Every libtunnelkit_<name>.so in the search path, first occurrence of a name wins.
  // Files that fail to load are reported in errors and skipped.
  std::vector<PluginDescriptor> Discover(std::vector<PluginError>& errors) const;

  // Loads one backend by name. On failure returns nullptr and fills error.
  std::unique_ptr<Backend> Load(const std::string& name, PluginDescriptor& descriptor,
                                PluginError& error) const;

  // Loads one file (used by Discover and Load; exposed for tests).
  static std::optional<PluginDescriptor> Inspect(const std::filesystem::path& file,
                                                 PluginError& error);

  const std::vector<std::filesystem::path>& search_path() const { return search_path_; }

 private:
  std::vector<std::filesystem::path> search_path_;
};

}  // namespace tunnelkit
