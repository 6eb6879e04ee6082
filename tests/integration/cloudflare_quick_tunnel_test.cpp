// The cloudflare backend against tools/cfedge, as real processes on loopback: the quick-tunnel
// API call, the QUIC dial with the emulator's CA, registration on the control stream, the URL
// block, unregistration on SIGINT, and the one-line errors (429, API down, duplicate
// connection index, bad secret, untrusted edge certificate).
#include <gtest/gtest.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <regex>
#include <string>
#include <vector>

#include "process.hpp"

namespace {

using tunnelkit::test::ChildProcess;
using tunnelkit::test::ProcessResult;
using tunnelkit::test::RunProcess;
using namespace std::chrono_literals;

std::string CfedgePath() {
  // cfedge is built next to tunnelctl (<build>/bin).
  return (std::filesystem::path(TUNNELCTL_PATH).parent_path() / "cfedge").string();
}

std::string TempPath(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("cfrpc-" + std::to_string(::getpid()) + "-" + name))
      .string();
}

// The value after "<label> " on a line of the output ("api http://127.0.0.1:1234").
std::string Field(const std::string& output, const std::string& label) {
  std::smatch match;
  std::regex pattern("(^|\n)" + label + " ([^\n]+)");
  if (std::regex_search(output, match, pattern)) return match[2];
  return {};
}

struct Edge {
  ChildProcess process;
  std::string api;   // http://127.0.0.1:PORT
  std::string edge;  // 127.0.0.1:PORT (quic) or tcp://127.0.0.1:PORT
  std::string ca;    // CA file
};

Edge StartEdge(const std::vector<std::string>& extra, bool tcp = false) {
  Edge edge;
  edge.ca = TempPath("ca-" + std::to_string(std::rand()) + ".pem");
  std::vector<std::string> argv = {CfedgePath(), "--api-listen", "127.0.0.1:0", "--write-ca",
                                   edge.ca};
  if (tcp) {
    argv.insert(argv.end(), {"--tcp-listen", "127.0.0.1:0"});
  } else {
    argv.insert(argv.end(), {"--quic-listen", "127.0.0.1:0"});
  }
  argv.insert(argv.end(), extra.begin(), extra.end());
  edge.process = ChildProcess(argv);
  EXPECT_TRUE(edge.process.WaitForOutput("ready", 20s)) << edge.process.Output();
  std::string output = edge.process.Output();
  edge.api = Field(output, "api");
  edge.edge = tcp ? "tcp://" + Field(output, "edge tcp") : Field(output, "edge quic");
  return edge;
}

std::vector<std::string> Client(const Edge& edge, std::vector<std::string> extra = {}) {
  std::vector<std::string> argv = {
      TUNNELCTL_PATH,    "--backend",      "cloudflare", "--url",   "http://localhost:8080",
      "--quick-service", edge.api,         "--edge",     edge.edge, "--edge-ca",
      edge.ca,           "--grace-period", "2s"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return argv;
}

class CloudflareQuickTunnel : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(CfedgePath()))
      GTEST_FAIL() << "cfedge not built: " << CfedgePath();
  }
};

void RunRegistersAndUnregisters(bool tcp) {
  Edge edge = StartEdge({}, tcp);
  ChildProcess client(Client(edge));
  ASSERT_TRUE(edge.process.WaitForOutput("registered tunnel=", 20s))
      << edge.process.Output() << "\n--- client:\n"
      << client.Output();
  std::smatch match;
  std::string edge_output = edge.process.Output();
  std::string hostname;
  if (std::regex_search(edge_output, match,
                        std::regex("issued tunnel=[^ ]+ hostname=([a-z0-9.-]+)"))) {
    hostname = match[1];
  }
  ASSERT_FALSE(hostname.empty()) << edge.process.Output();
  EXPECT_NE(hostname.find(".trycloudflare.com"), std::string::npos);
  ASSERT_TRUE(client.WaitForOutput("connection 0 registered: location=lhr01", 10s))
      << client.Output();
  EXPECT_NE(client.Output().find("https://" + hostname), std::string::npos) << client.Output();
  // The edge received the local configuration of connection 0.
  EXPECT_TRUE(edge.process.WaitForOutput("config tunnel=", 5s)) << edge.process.Output();
  EXPECT_EQ(client.Stop(SIGINT, 15s), 0) << client.Output();
  EXPECT_TRUE(edge.process.WaitForOutput("unregistered tunnel=", 5s)) << edge.process.Output();
  EXPECT_NE(client.Output().find("connection 0 unregistered"), std::string::npos)
      << client.Output();
  edge.process.Stop(SIGTERM);
  std::filesystem::remove(edge.ca);
}

TEST_F(CloudflareQuickTunnel, RegistersOverQuicPrintsUrlAndUnregistersOnSigint) {
  RunRegistersAndUnregisters(false);
}

TEST_F(CloudflareQuickTunnel, RegistersOverTcpTestTransport) {
  RunRegistersAndUnregisters(true);
}

TEST_F(CloudflareQuickTunnel, TwoHaConnections) {
  Edge edge = StartEdge({"--location", "lhr01", "--location", "ams07"});
  ChildProcess client(Client(edge, {"--ha-connections", "2"}));
  ASSERT_TRUE(client.WaitForOutput("connection 1 registered: location=ams07", 20s))
      << client.Output();
  EXPECT_NE(client.Output().find("connection 0 registered: location=lhr01"), std::string::npos);
  EXPECT_EQ(client.Stop(SIGTERM, 15s), 0) << client.Output();
  EXPECT_TRUE(edge.process.WaitForOutput("unregistered tunnel=", 5s));
  std::string out = edge.process.Output();
  EXPECT_NE(out.find("conn_index=1 connection="), std::string::npos) << out;
  edge.process.Stop(SIGTERM);
}

TEST_F(CloudflareQuickTunnel, DuplicateConnectionIndexIsRefused) {
  Edge edge = StartEdge({"--reuse-tunnel"});
  ChildProcess first(Client(edge));
  ASSERT_TRUE(first.WaitForOutput("connection 0 registered", 20s)) << first.Output();
  ProcessResult second = RunProcess(Client(edge), 30s);
  // The edge says not to retry: a permanent failure.
  EXPECT_EQ(second.exit_status, 3) << second.out << second.err;
  EXPECT_NE(second.err.find("the edge refused connection 0: EDUPCONN"), std::string::npos)
      << second.err;
  EXPECT_EQ(first.Stop(SIGINT, 15s), 0);
  edge.process.Stop(SIGTERM);
}

TEST_F(CloudflareQuickTunnel, BadSecretIsRefused) {
  Edge edge = StartEdge({"--issue-bad-secret"});
  ProcessResult result = RunProcess(Client(edge), 30s);
  EXPECT_EQ(result.exit_status, 3) << result.out << result.err;
  EXPECT_NE(result.err.find("the edge refused connection 0: Unauthorized: invalid tunnel secret"),
            std::string::npos)
      << result.err;
  EXPECT_TRUE(edge.process.WaitForOutput("refused tunnel=", 2s));
  edge.process.Stop(SIGTERM);
}

TEST_F(CloudflareQuickTunnel, RateLimitedApi) {
  Edge edge = StartEdge({"--rate-limit"});
  ProcessResult result = RunProcess(Client(edge), 30s);
  EXPECT_EQ(result.exit_status, 1) << result.out << result.err;
  EXPECT_NE(result.err.find("rate limiting new tunnels (HTTP 429 \"error code: 1015\"); wait 60 s"),
            std::string::npos)
      << result.err;
  EXPECT_EQ(result.out.find("https://"), std::string::npos);
  edge.process.Stop(SIGTERM);
}

TEST_F(CloudflareQuickTunnel, ApiDown) {
  Edge edge = StartEdge({});
  int port = tunnelkit::test::FreeTcpPort();
  ProcessResult result =
      RunProcess({TUNNELCTL_PATH, "--backend", "cloudflare", "--url", "http://localhost:8080",
                  "--quick-service", "http://127.0.0.1:" + std::to_string(port), "--edge",
                  edge.edge, "--edge-ca", edge.ca},
                 40s);
  EXPECT_EQ(result.exit_status, 1) << result.out << result.err;
  EXPECT_NE(result.err.find("cannot reach the quick-tunnel API at http://127.0.0.1:" +
                            std::to_string(port) + ": Connection refused"),
            std::string::npos)
      << result.err;
  edge.process.Stop(SIGTERM);
}

TEST_F(CloudflareQuickTunnel, UntrustedEdgeCertificate) {
  Edge edge = StartEdge({});
  // Another emulator's CA: the edge's certificate does not chain to it.
  Edge other = StartEdge({}, true);
  ProcessResult result =
      RunProcess({TUNNELCTL_PATH, "--backend", "cloudflare", "--url", "http://localhost:8080",
                  "--quick-service", edge.api, "--edge", edge.edge, "--edge-ca", other.ca},
                 30s);
  EXPECT_EQ(result.exit_status, 3) << result.out << result.err;
  EXPECT_NE(
      result.err.find("cannot connect to the edge at " + edge.edge + ": TLS verification failed"),
      std::string::npos)
      << result.err;
  // Without --edge-ca the built-in Cloudflare roots do not trust the emulator either.
  ProcessResult builtin =
      RunProcess({TUNNELCTL_PATH, "--backend", "cloudflare", "--url", "http://localhost:8080",
                  "--quick-service", edge.api, "--edge", edge.edge},
                 30s);
  EXPECT_EQ(builtin.exit_status, 3) << builtin.err;
  EXPECT_NE(builtin.err.find("TLS verification failed"), std::string::npos) << builtin.err;
  edge.process.Stop(SIGTERM);
  other.process.Stop(SIGTERM);
}

TEST_F(CloudflareQuickTunnel, HttpsApiWithApiCa) {
  Edge edge = StartEdge({"--api-tls"});
  ASSERT_EQ(edge.api.rfind("https://", 0), 0u) << edge.api;
  // The API's certificate names 127.0.0.1; --api-ca trusts the emulator's CA.
  ChildProcess client(Client(edge, {"--api-ca", edge.ca}));
  ASSERT_TRUE(client.WaitForOutput("connection 0 registered", 20s)) << client.Output();
  EXPECT_EQ(client.Stop(SIGINT, 15s), 0);
  edge.process.Stop(SIGTERM);
}

}  // namespace
