// The loader against real shared objects: the three backends, and fixtures that are broken on
// purpose (wrong ABI, no exports, a throwing factory, a file that is not ELF at all).
#include "tunnelkit/plugin_loader.hpp"

#include <gtest/gtest.h>

#include <fstream>

#include "process.hpp"

namespace tunnelkit {
namespace {

namespace fs = std::filesystem;

fs::path TempDir(const std::string& name) {
  auto dir =
      fs::temp_directory_path() / ("tunnelkit-loader-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

fs::path WriteCorruptPlugin(const fs::path& dir, const std::string& name) {
  auto file = dir / ("libtunnelkit_" + name + ".so");
  std::ofstream(file) << "\x7f"
                         "ELF this is not a shared object at all";
  return file;
}

int CountLines(const std::string& text) {
  return static_cast<int>(std::count(text.begin(), text.end(), '\n'));
}

TEST(PluginLoader, InspectsTheThreeBackendsOfTheBuildTree) {
  PluginLoader loader({TUNNELKIT_PLUGIN_BUILD_DIR});
  std::vector<PluginError> errors;
  auto plugins = loader.Discover(errors);
  EXPECT_TRUE(errors.empty());
  std::vector<std::string> names;
  for (const auto& p : plugins) {
    names.push_back(p.name);
    EXPECT_FALSE(p.version.empty());
    EXPECT_NE(p.roles, 0u);
  }
  EXPECT_EQ(names, (std::vector<std::string>{"cloudflare", "ferro", "zlayer"}));
}

TEST(PluginLoader, LoadsAGoodPluginAndRunsIt) {
  PluginLoader loader({TUNNELKIT_TEST_PLUGIN_DIR});
  PluginDescriptor descriptor;
  PluginError error;
  auto backend = loader.Load("goodfixture", descriptor, error);
  ASSERT_NE(backend, nullptr) << error.Describe();
  EXPECT_EQ(descriptor.version, "9.9.9");
  EXPECT_EQ(RoleNames(descriptor.roles), "client,server");
}

TEST(PluginLoader, RefusesAnAbiMismatchNamingTheFile) {
  PluginError error;
  auto file = fs::path(TUNNELKIT_TEST_PLUGIN_DIR) / "libtunnelkit_wrongabi.so";
  EXPECT_FALSE(PluginLoader::Inspect(file, error));
  EXPECT_EQ(error.file, file);
  EXPECT_NE(error.reason.find("ABI version 42"), std::string::npos) << error.reason;
  EXPECT_EQ(error.Describe().find('\n'), std::string::npos);
}

TEST(PluginLoader, RefusesASharedObjectWithoutExports) {
  PluginError error;
  auto file = fs::path(TUNNELKIT_TEST_PLUGIN_DIR) / "libtunnelkit_noexports.so";
  EXPECT_FALSE(PluginLoader::Inspect(file, error));
  EXPECT_NE(error.reason.find("not a tunnelkit plugin"), std::string::npos) << error.reason;
}

TEST(PluginLoader, RefusesACorruptFile) {
  auto dir = TempDir("corrupt");
  auto file = WriteCorruptPlugin(dir, "broken");
  PluginError error;
  EXPECT_FALSE(PluginLoader::Inspect(file, error));
  EXPECT_NE(error.reason.find("cannot load"), std::string::npos) << error.reason;
  EXPECT_NE(error.Describe().find(file.string()), std::string::npos);
  EXPECT_EQ(error.Describe().find('\n'), std::string::npos);
}

TEST(PluginLoader, ReportsAThrowingFactory) {
  PluginLoader loader({TUNNELKIT_TEST_PLUGIN_DIR});
  PluginDescriptor descriptor;
  PluginError error;
  EXPECT_EQ(loader.Load("throwing", descriptor, error), nullptr);
  EXPECT_NE(error.reason.find("fixture refuses"), std::string::npos) << error.reason;
}

TEST(PluginLoader, UnknownBackendNamesItAndTheSearchPath) {
  PluginLoader loader({TUNNELKIT_TEST_PLUGIN_DIR});
  PluginDescriptor descriptor;
  PluginError error;
  EXPECT_EQ(loader.Load("nope", descriptor, error), nullptr);
  EXPECT_NE(error.Describe().find("unknown backend 'nope'"), std::string::npos);
  EXPECT_NE(error.Describe().find(TUNNELKIT_TEST_PLUGIN_DIR), std::string::npos);
  EXPECT_EQ(loader.Load("../../etc/passwd", descriptor, error), nullptr);
  EXPECT_NE(error.reason.find("unknown backend"), std::string::npos);
}

TEST(PluginLoader, DiscoverSkipsBrokenFilesAndKeepsGoodOnes) {
  auto dir = TempDir("discover");
  WriteCorruptPlugin(dir, "aaa");
  PluginLoader loader({dir, TUNNELKIT_PLUGIN_BUILD_DIR});
  std::vector<PluginError> errors;
  auto plugins = loader.Discover(errors);
  EXPECT_EQ(plugins.size(), 3u);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].file.filename(), "libtunnelkit_aaa.so");
}

TEST(PluginLoader, EnvironmentPathComesBeforeTheBuildTree) {
  ::setenv("TUNNELKIT_PLUGIN_PATH", "/first:/second", 1);
  auto path = PluginLoader::DefaultSearchPath({"/explicit"});
  ::unsetenv("TUNNELKIT_PLUGIN_PATH");
  ASSERT_GE(path.size(), 4u);
  EXPECT_EQ(path[0], "/explicit");
  EXPECT_EQ(path[1], "/first");
  EXPECT_EQ(path[2], "/second");
  EXPECT_EQ(path[3], TUNNELKIT_PLUGIN_BUILD_DIR);
}

// The same paths through the real CLI: one line on stderr, exit status 2.
TEST(TunnelctlPlugins, BackendsListsTheThreePlugins) {
  auto r = test::RunProcess({TUNNELCTL_PATH, "backends"});
  EXPECT_EQ(r.exit_status, 0) << r.err;
  for (const char* name : {"cloudflare", "ferro", "zlayer"}) {
    EXPECT_NE(r.out.find(std::string("\n") + name + " "), std::string::npos) << r.out;
  }
  EXPECT_NE(r.out.find("client,server"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("libtunnelkit_ferro.so"), std::string::npos) << r.out;
}

TEST(TunnelctlPlugins, UnknownBackendIsOneLineAndStatus2) {
  auto r = test::RunProcess({TUNNELCTL_PATH, "--backend", "nope"});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(CountLines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("unknown backend 'nope'"), std::string::npos) << r.err;
}

TEST(TunnelctlPlugins, CorruptPluginIsOneLineAndStatus2) {
  auto dir = TempDir("cli-corrupt");
  auto file = WriteCorruptPlugin(dir, "ferro");  // shadows the real ferro
  auto r = test::RunProcess({TUNNELCTL_PATH, "--backend", "ferro", "--plugin-dir", dir.string()});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(CountLines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find(file.string()), std::string::npos) << r.err;
  auto listed = test::RunProcess({TUNNELCTL_PATH, "backends", "--plugin-dir", dir.string()});
  EXPECT_EQ(listed.exit_status, 2);
  EXPECT_EQ(CountLines(listed.err), 1) << listed.err;
  EXPECT_NE(listed.out.find("cloudflare"), std::string::npos);
}

TEST(TunnelctlPlugins, AbiMismatchIsOneLineAndStatus2) {
  auto r = test::RunProcess(
      {TUNNELCTL_PATH, "--backend", "wrongabi", "--plugin-dir", TUNNELKIT_TEST_PLUGIN_DIR});
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_EQ(CountLines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("libtunnelkit_wrongabi.so"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("ABI version"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace tunnelkit
