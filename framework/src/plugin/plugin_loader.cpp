#include "tunnelkit/plugin_loader.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <set>
#include <system_error>

#include <boost/dll/shared_library.hpp>

namespace tunnelkit {
namespace {

constexpr std::string_view kPrefix = "libtunnelkit_";
constexpr std::string_view kSuffix = ".so";

// Loaded libraries stay loaded for the life of the process: backend objects keep their
// vtables and code in them, and unloading buys nothing for a CLI.
std::mutex g_libraries_mutex;
std::vector<boost::dll::shared_library>& Libraries() {
  static auto* libraries = new std::vector<boost::dll::shared_library>();
  return *libraries;
}

std::string OneLine(std::string text) {
  std::replace(text.begin(), text.end(), '\n', ' ');
  while (!text.empty() && text.back() == ' ') text.pop_back();
  return text;
}

std::optional<std::string> PluginNameOf(const std::filesystem::path& file) {
  std::string base = file.filename().string();
  if (base.size() <= kPrefix.size() + kSuffix.size()) return std::nullopt;
  if (base.compare(0, kPrefix.size(), kPrefix) != 0) return std::nullopt;
  if (base.compare(base.size() - kSuffix.size(), kSuffix.size(), kSuffix) != 0) {
    return std::nullopt;
  }
  return base.substr(kPrefix.size(), base.size() - kPrefix.size() - kSuffix.size());
}

std::filesystem::path ExecutableDir() {
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::filesystem::path{} : exe.parent_path();
}

}  // namespace

std::string RoleNames(std::uint32_t roles) {
  std::string out;
  auto add = [&](std::uint32_t bit, const char* name) {
    if ((roles & bit) == 0) return;
    if (!out.empty()) out += ',';
    out += name;
  };
  add(kRoleClient, "client");
  add(kRoleServer, "server");
  add(kRoleLink, "link");
  add(kRoleAccess, "access");
  return out.empty() ? "none" : out;
}

std::string PluginError::Describe() const {
  if (file.empty()) return reason;
  return "plugin " + file.string() + ": " + reason;
}

std::vector<std::filesystem::path> PluginLoader::DefaultSearchPath(
    const std::vector<std::string>& explicit_dirs) {
  std::vector<std::filesystem::path> path;
  for (const auto& dir : explicit_dirs) path.emplace_back(dir);
  if (const char* env = std::getenv("TUNNELKIT_PLUGIN_PATH"); env != nullptr) {
    std::string_view rest(env);
    while (!rest.empty()) {
      auto colon = rest.find(':');
      auto item = rest.substr(0, colon);
      if (!item.empty()) path.emplace_back(std::string(item));
      if (colon == std::string_view::npos) break;
      rest.remove_prefix(colon + 1);
    }
  }
#ifdef TUNNELKIT_PLUGIN_BUILD_DIR
  path.emplace_back(TUNNELKIT_PLUGIN_BUILD_DIR);
#endif
#ifdef TUNNELKIT_PLUGIN_INSTALL_DIR
  path.emplace_back(TUNNELKIT_PLUGIN_INSTALL_DIR);
#endif
  if (auto exe_dir = ExecutableDir(); !exe_dir.empty()) {
    path.push_back(exe_dir / ".." / "lib" / "tunnelkit");
  }
  return path;
}

PluginLoader::PluginLoader(std::vector<std::filesystem::path> search_path)
    : search_path_(std::move(search_path)) {}

std::optional<PluginDescriptor> PluginLoader::Inspect(const std::filesystem::path& file,
                                                      PluginError& error) {
  error = PluginError{file, {}};
  boost::dll::shared_library library;
  try {
    library.load(file, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
  } catch (const std::exception& e) {
    // dlerror() text names the file already; keep only the reason.
    std::string what = OneLine(e.what());
    if (auto pos = what.rfind(": "); pos != std::string::npos) what = what.substr(pos + 2);
    if (auto pos = what.find(")"); pos != std::string::npos && pos + 1 == what.size()) {
      what.pop_back();
    }
    error.reason = "cannot load: " + what;
    return std::nullopt;
  }
  if (!library.has("tunnelkit_plugin_abi") || !library.has("tunnelkit_plugin_info") ||
      !library.has("tunnelkit_backend_factory")) {
    error.reason = "not a tunnelkit plugin (no tunnelkit_plugin_abi export)";
    return std::nullopt;
  }
  const std::uint32_t abi = library.get_alias<std::uint32_t()>("tunnelkit_plugin_abi")();
  if (abi != kPluginAbiVersion) {
    error.reason = "ABI version " + std::to_string(abi) + " does not match tunnelctl's " +
                   std::to_string(kPluginAbiVersion) + "; rebuild the plugin";
    return std::nullopt;
  }
  const BackendInfo* info = library.get_alias<const BackendInfo*()>("tunnelkit_plugin_info")();
  if (info == nullptr || info->name == nullptr || info->version == nullptr) {
    error.reason = "plugin info is empty";
    return std::nullopt;
  }
  PluginDescriptor descriptor{info->name, info->version, info->roles,
                              info->summary ? info->summary : "", file};
  std::lock_guard lock(g_libraries_mutex);
  Libraries().push_back(std::move(library));
  return descriptor;
}

std::vector<PluginDescriptor> PluginLoader::Discover(std::vector<PluginError>& errors) const {
  std::vector<PluginDescriptor> found;
  std::set<std::string> seen;
  for (const auto& dir : search_path_) {
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec)) continue;
    std::vector<std::filesystem::path> files;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
      if (PluginNameOf(entry.path())) files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
    for (const auto& file : files) {
      auto name = *PluginNameOf(file);
      if (seen.count(name) != 0) continue;
      seen.insert(name);
      PluginError error;
      if (auto descriptor = Inspect(file, error)) {
        found.push_back(std::move(*descriptor));
      } else {
        errors.push_back(std::move(error));
      }
    }
  }
  return found;
}

std::unique_ptr<Backend> PluginLoader::Load(const std::string& name, PluginDescriptor& descriptor,
                                            PluginError& error) const {
  const bool valid_name = !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
  if (!valid_name) {
    error = PluginError{{}, "unknown backend '" + name + "'"};
    return nullptr;
  }
  for (const auto& dir : search_path_) {
    auto file = dir / (std::string(kPrefix) + name + std::string(kSuffix));
    std::error_code ec;
    if (!std::filesystem::exists(file, ec)) continue;
    auto inspected = Inspect(file, error);
    if (!inspected) return nullptr;
    if (inspected->name != name) {
      error.reason =
          "file is named for backend '" + name + "' but declares '" + inspected->name + "'";
      return nullptr;
    }
    descriptor = *inspected;
    boost::dll::shared_library library(
        file, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
    auto factory = library.get_alias<std::unique_ptr<Backend>()>("tunnelkit_backend_factory");
    std::unique_ptr<Backend> backend;
    try {
      backend = factory();
    } catch (const std::exception& e) {
      error.reason = std::string("factory failed: ") + OneLine(e.what());
      return nullptr;
    }
    {
      std::lock_guard lock(g_libraries_mutex);
      Libraries().push_back(std::move(library));
    }
    return backend;
  }
  std::string searched;
  for (const auto& dir : search_path_) {
    if (!searched.empty()) searched += ":";
    searched += dir.string();
  }
  error = PluginError{
      {}, "unknown backend '" + name + "' (no libtunnelkit_" + name + ".so in " + searched + ")"};
  return nullptr;
}

}  // namespace tunnelkit
