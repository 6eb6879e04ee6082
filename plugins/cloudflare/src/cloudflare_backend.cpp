#include "cloudflare_backend.hpp"

#include <cstdio>

#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>

#include "client/quick_tunnel_client.hpp"
#include "tunnelkit/runtime.hpp"

namespace tunnelkit::cloudflare {

const BackendInfo kBackendInfo{"cloudflare", TUNNELKIT_VERSION_STRING, kRoleClient,
                               "Cloudflare quick tunnels over QUIC and Cap'n Proto RPC"};

namespace {

constexpr int kMaxHaConnections = 4;

std::chrono::milliseconds GracePeriod(const config::v1::Tunnel& config) {
  if (!config.has_grace_period()) return std::chrono::seconds(30);
  const auto& d = config.grace_period();
  return std::chrono::milliseconds(d.seconds() * 1000 + d.nanos() / 1000000);
}

class CloudflareBackend final : public Backend {
 public:
  void Validate(const config::v1::Tunnel& config, std::vector<ConfigIssue>& issues) const override {
    if (config.mode() != "run" && !config.mode().empty()) {
      issues.push_back({"mode", "the cloudflare backend only runs clients (mode run)"});
    }
    const auto& cf = config.cloudflare();
    for (int i = 0; i < cf.edge_size(); ++i) {
      std::string error;
      ParseEdgeAddress(cf.edge(i), error);
      if (!error.empty()) issues.push_back({"cloudflare.edge[" + std::to_string(i) + "]", error});
    }
    std::string error;
    if (!cf.dns_resolver().empty() && (ParseIpPort(cf.dns_resolver(), error), !error.empty())) {
      issues.push_back({"cloudflare.dns_resolver", error});
    }
    if (!cf.dns_over_tls().empty() && (ParseIpPort(cf.dns_over_tls(), error), !error.empty())) {
      issues.push_back({"cloudflare.dns_over_tls", error});
    }
    if (cf.ha_connections() > kMaxHaConnections) {
      issues.push_back({"cloudflare.ha_connections", "at most 4 connections"});
    }
    if (!cf.quick_service().empty()) {
      try {
        ParseServiceUrl(cf.quick_service());
      } catch (const std::exception& e) {
        issues.push_back({"cloudflare.quick_service", e.what()});
      }
    }
  }

  int Run(Runtime& runtime) override {
    std::vector<ConfigIssue> issues;
    Validate(runtime.config(), issues);
    for (const auto& issue : issues) {
      runtime.logger()->error("{}: {}", issue.path, issue.reason);
    }
    if (!issues.empty()) return 2;
    const auto& config = runtime.config();
    const auto& cf = config.cloudflare();
    QuickTunnelClientOptions options;
    if (!cf.quick_service().empty()) options.api.service_url = cf.quick_service();
    options.api.ca_file = cf.api_ca();
    for (const auto& edge : cf.edge()) {
      std::string error;
      options.edges.push_back(ParseEdgeAddress(edge, error));
    }
    options.dial.ca_file = cf.edge_ca();
    std::string unused;
    if (!cf.dns_resolver().empty()) {
      auto resolver = ParseIpPort(cf.dns_resolver(), unused);
      options.discovery.resolvers = {
          boost::asio::ip::udp::endpoint(resolver.address(), resolver.port())};
    }
    if (!cf.dns_over_tls().empty())
      options.discovery.dot_server = ParseIpPort(cf.dns_over_tls(), unused);
    options.discovery.dot_ca_file = cf.dns_over_tls_ca();
    options.ha_connections = cf.ha_connections() == 0 ? 1 : static_cast<int>(cf.ha_connections());
    options.grace_period = GracePeriod(config);
    options.url_file = cf.url_file();
    options.origin_url = config.url().empty() ? "http://localhost:8080" : config.url();
    auto print = [](const std::string& line) {
      std::fprintf(stdout, "%s\n", line.c_str());
      std::fflush(stdout);
    };
    QuickTunnelClient client(runtime.io(), options, runtime.logger(), print);
    runtime.OnStop([&client] { client.Stop(); });
    int status = 1;
    boost::asio::co_spawn(runtime.io(), client.Run(), [&](std::exception_ptr e, int result) {
      status = e ? 1 : result;
      runtime.io().stop();
    });
    runtime.io().run();
    return status;
  }
};

}  // namespace

std::unique_ptr<Backend> MakeCloudflareBackend() {
  return std::make_unique<CloudflareBackend>();
}

}  // namespace tunnelkit::cloudflare
