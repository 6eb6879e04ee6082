// The servers' limits on anonymous clients are typed configuration fields with flags: good
// values pass --check (and show in the effective configuration), contradictions are refused
// before anything starts, naming the field.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "process.hpp"

namespace {

using tunnelkit::test::RunProcess;
const std::string kTunnelctl = TUNNELCTL_PATH;

TEST(ServerLimitFlags, FerroTakesTheLimitsAndRefusesContradictions) {
  const std::vector<std::string> base = {kTunnelctl, "serve",           "--backend",
                                         "ferro",    "--token",         "t0ps3cret",
                                         "--http",   "127.0.0.1:18080", "--check"};
  auto good = base;
  for (const char* flag : {"--max-public-connections=100", "--max-public-connections-per-source=10",
                           "--max-unauthenticated=50", "--max-unauthenticated-per-source=5",
                           "--auth-failure-rate=0.5", "--auth-failure-burst=4"}) {
    good.push_back(flag);
  }
  auto r = RunProcess(good, std::chrono::seconds(20));
  EXPECT_EQ(r.exit_status, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("max_public_connections_per_source: 10"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("auth_failure_burst: 4"), std::string::npos) << r.out;

  auto bad = base;
  bad.push_back("--max-public-connections=10");
  bad.push_back("--max-public-connections-per-source=20");
  bad.push_back("--auth-failure-burst=0.5");
  r = RunProcess(bad, std::chrono::seconds(20));
  EXPECT_EQ(r.exit_status, 2) << r.out << r.err;
  EXPECT_NE(r.err.find("ferro.max_public_connections_per_source: 20 is more than "
                       "ferro.max_public_connections (10)"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("ferro.auth_failure_burst"), std::string::npos) << r.err;
}

TEST(ServerLimitFlags, ZlayerTakesTheLimitsAndRefusesContradictions) {
  const auto tokens =
      std::filesystem::temp_directory_path() / ("limit-flags-tokens-" + std::to_string(::getpid()));
  std::ofstream(tokens) << std::string(64, 'a') << "\n";
  const std::vector<std::string> base = {kTunnelctl, "serve",           "--backend", "zlayer",
                                         "--listen", "127.0.0.1:13679", "--ports",   "30000-30009",
                                         "--tokens", tokens.string(),   "--check"};
  auto good = base;
  good.push_back("--max-ports-per-token=3");
  good.push_back("--max-unauthenticated-per-source=4");
  auto r = RunProcess(good, std::chrono::seconds(20));
  EXPECT_EQ(r.exit_status, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("max_ports_per_token: 3"), std::string::npos) << r.out;

  auto bad = base;
  bad.push_back("--max-ports-per-token=11");
  bad.push_back("--max-unauthenticated=4");
  bad.push_back("--max-unauthenticated-per-source=8");
  r = RunProcess(bad, std::chrono::seconds(20));
  EXPECT_EQ(r.exit_status, 2) << r.out << r.err;
  EXPECT_NE(r.err.find("zlayer.max_ports_per_token: 11 is more than the ports"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("zlayer.max_unauthenticated_per_source: 8 is more than "
                       "zlayer.max_unauthenticated (4)"),
            std::string::npos)
      << r.err;
  std::filesystem::remove(tokens);
}

}  // namespace
