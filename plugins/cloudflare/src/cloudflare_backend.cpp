#include "cloudflare_backend.hpp"

#include <cstdio>

#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>

#include "client/quick_tunnel_client.hpp"
#include "tunnelkit/admin/admin_server.hpp"
#include "tunnelkit/config/duration.hpp"
#include "tunnelkit/logging.hpp"
#include "tunnelkit/memory_trim.hpp"
#include "tunnelkit/net/ip_port.hpp"
#include "tunnelkit/origin/origin_proxy.hpp"
#include "tunnelkit/runtime.hpp"
#include "tunnelkit/session/backoff.hpp"

namespace tunnelkit::cloudflare {

const BackendInfo kBackendInfo{"cloudflare", TUNNELKIT_VERSION_STRING, kRoleClient,
                               "Cloudflare quick tunnels over QUIC and Cap'n Proto RPC"};

namespace {

constexpr int kMaxHaConnections = 4;

std::chrono::milliseconds GracePeriod(const config::v1::Tunnel& config) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(config::DurationOr(
      config.has_grace_period(), config.grace_period(), std::chrono::seconds(30)));
}

// cloudflared's default origin when neither --url nor ingress rules are given.
config::v1::Tunnel WithDefaultUrl(const config::v1::Tunnel& config) {
  config::v1::Tunnel copy = config;
  if (copy.url().empty() && copy.ingress_size() == 0) copy.set_url("http://localhost:8080");
  return copy;
}

// The spec's policy, with whatever the user set in `reconnect` on top.
session::BackoffPolicy EdgeBackoff(const config::v1::Tunnel& config) {
  session::BackoffPolicy policy = DefaultEdgeBackoff();
  if (!config.has_reconnect()) return policy;
  const auto& r = config.reconnect();
  session::BackoffPolicy user = session::BackoffPolicyFromConfig(r);
  if (r.has_base()) policy.base = user.base;
  if (r.factor() != 0) policy.factor = user.factor;
  if (r.has_cap()) policy.cap = user.cap;
  if (r.jitter() != 0) policy.jitter = user.jitter;
  return policy;
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
    if (!cf.dns_resolver().empty()) {
      if (auto resolver = net::ParseIpPort(cf.dns_resolver()); !resolver)
        issues.push_back({"cloudflare.dns_resolver", resolver.message()});
    }
    if (!cf.dns_over_tls().empty()) {
      if (auto server = net::ParseIpPort(cf.dns_over_tls()); !server)
        issues.push_back({"cloudflare.dns_over_tls", server.message()});
    }
    if (cf.ha_connections() > kMaxHaConnections) {
      issues.push_back({"cloudflare.ha_connections", "at most 4 connections"});
    }
    if (cf.retries() > 1000) issues.push_back({"cloudflare.retries", "at most 1000"});
    // Ingress rules are refused here, before anything starts, not when a request arrives.
    origin::Router::Compile(WithDefaultUrl(config), issues);
    if (config.has_reconnect())
      session::ValidateBackoffConfig(config.reconnect(), "reconnect", issues);
    if (!cf.quick_service().empty()) {
      try {
        ParseServiceUrl(cf.quick_service());
      } catch (const std::exception& e) {
        issues.push_back({"cloudflare.quick_service", e.what()});
      }
    }
  }

  int Run(Runtime& runtime) override {
    TuneAllocator();  // heap trims come after bursts (EdgeStreamServer), not on every free
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
    // Validate() above refused anything these would not parse.
    if (!cf.dns_resolver().empty()) {
      auto resolver = *net::ParseIpPort(cf.dns_resolver());
      options.discovery.resolvers = {
          boost::asio::ip::udp::endpoint(resolver.address(), resolver.port())};
    }
    if (!cf.dns_over_tls().empty())
      options.discovery.dot_server = *net::ParseIpPort(cf.dns_over_tls());
    options.discovery.dot_ca_file = cf.dns_over_tls_ca();
    options.ha_connections = cf.ha_connections() == 0 ? 1 : static_cast<int>(cf.ha_connections());
    options.grace_period = GracePeriod(config);
    options.url_file = cf.url_file();
    options.retries = cf.retries() == 0 ? 5 : static_cast<int>(cf.retries());
    options.backoff = EdgeBackoff(config);
    options.tunnel_label = config.id().empty() ? "cloudflare" : config.id();
    auto effective = WithDefaultUrl(config);
    options.origin_url = effective.url().empty() ? effective.ingress(0).service() : effective.url();
    std::vector<ConfigIssue> router_issues;
    auto router = origin::Router::Compile(effective, router_issues);
    if (!router) return 2;  // Validate reported it
    origin::OriginProxy proxy(runtime.io().get_executor(), std::move(*router),
                              runtime.MakeLogger("origin"));
    auto print = [](const std::string& line) {
      std::fprintf(stdout, "%s\n", line.c_str());
      std::fflush(stdout);
    };
    QuickTunnelClient client(runtime.io(), options, proxy, &runtime.metrics(), runtime.logger(),
                             print);
    runtime.SetReadiness([&client] {
      int n = client.ready_connections();
      return admin::Readiness{n > 0, static_cast<std::uint32_t>(n)};
    });
    // Shaped as cloudflared's: the host name without a scheme.
    runtime.AddAdminRoute("/quicktunnel", [&client] {
      return "{\"hostname\":" + logging::JsonString(client.hostname()) + "}";
    });
    runtime.SetDetails([&client] {
      return "{\"hostname\":" + logging::JsonString(client.hostname()) +
             ",\"readyConnections\":" + std::to_string(client.ready_connections()) +
             ",\"connectorId\":" + logging::JsonString(client.connector_id()) + "}";
    });
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
