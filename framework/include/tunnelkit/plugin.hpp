// The plugin SDK: what a backend shared object exports and what the host calls.
//
// A backend exports three symbols (all through TUNNELKIT_DECLARE_BACKEND):
//   tunnelkit_plugin_abi   -> std::uint32_t()       checked first, before any C++ type crosses
//   tunnelkit_plugin_info  -> const BackendInfo*()  plain data: name, version, roles
//   tunnelkit_backend_factory -> std::unique_ptr<Backend>()
// Host and plugins are built by one toolchain with the same flags, so C++ types may cross the
// boundary once the ABI version matches. Libraries are never unloaded (objects' vtables live
// in them).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <boost/dll/alias.hpp>

namespace tunnelkit {

// Bumped whenever Backend, Runtime or any type they expose changes layout or meaning.
inline constexpr std::uint32_t kPluginAbiVersion = 1;

enum Role : std::uint32_t {
  kRoleClient = 1u << 0,  // tunnelctl --backend X (expose a local service)
  kRoleServer = 1u << 1,  // tunnelctl serve
  kRoleLink = 1u << 2,    // tunnelctl link (node to node)
  kRoleAccess = 1u << 3,  // tunnelctl access (local forward)
};

std::string RoleNames(std::uint32_t roles);

struct BackendInfo {
  const char* name;
  const char* version;
  std::uint32_t roles;
  const char* summary;
};

class Runtime;

namespace config::v1 {
class Tunnel;
}

// One problem in the configuration: the field's path ("ferro.listen") and the reason.
struct ConfigIssue {
  std::string path;
  std::string reason;
};

class Backend {
 public:
  virtual ~Backend() = default;
  // Checks the backend's part of the effective configuration before anything starts
  // (tunnelctl refuses to run, and --check reports, when issues is not empty).
  virtual void Validate(const config::v1::Tunnel& config, std::vector<ConfigIssue>& issues) const {
    (void)config;
    (void)issues;
  }
  // Runs the configured mode until stopped; returns the process exit status.
  // Runtime carries the validated configuration, the event loop, logging and metrics.
  virtual int Run(Runtime& runtime) = 0;
};

}  // namespace tunnelkit

#define TUNNELKIT_DECLARE_BACKEND(info_object, factory_function)                 \
  namespace tunnelkit_plugin_exports {                                           \
  inline std::uint32_t abi_version() {                                           \
    return ::tunnelkit::kPluginAbiVersion;                                       \
  }                                                                              \
  inline const ::tunnelkit::BackendInfo* backend_info() {                        \
    return &(info_object);                                                       \
  }                                                                              \
  inline std::unique_ptr<::tunnelkit::Backend> make_backend() {                  \
    return factory_function();                                                   \
  }                                                                              \
  }                                                                              \
  BOOST_DLL_ALIAS(tunnelkit_plugin_exports::abi_version, tunnelkit_plugin_abi)   \
  BOOST_DLL_ALIAS(tunnelkit_plugin_exports::backend_info, tunnelkit_plugin_info) \
  BOOST_DLL_ALIAS(tunnelkit_plugin_exports::make_backend, tunnelkit_backend_factory)
