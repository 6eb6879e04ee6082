#include "zlayer_backend.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <chrono>
#include <nlohmann/json.hpp>

#include "access/access_forwarder.hpp"
#include "agent/tunnel_agent.hpp"
#include "server/tunnel_server.hpp"
#include "tunnelkit/config/duration.hpp"
#include "tunnelkit/config/v1/tunnel.pb.h"
#include "tunnelkit/memory_trim.hpp"
#include "tunnelkit/net/server_limits.hpp"
#include "tunnelkit/plugin.hpp"
#include "tunnelkit/runtime.hpp"
#include "tunnelkit/session/backoff.hpp"
#include "tunnelkit/session/link_report.hpp"
#include "tunnelkit/session/supervisor.hpp"
#include "util/memory_trim.hpp"

namespace tunnelkit::zlayer {

const BackendInfo kBackendInfo{"zlayer", TUNNELKIT_VERSION_STRING,
                               kRoleServer | kRoleLink | kRoleAccess,
                               "WebSocket node-to-node tunnels, ZLayer control channel"};

namespace {

namespace asio = boost::asio;
using config::v1::ZlayerConfig;
using config::v1::ZlayerLink;

std::chrono::milliseconds Millis(const google::protobuf::Duration& d,
                                 std::chrono::milliseconds fallback) {
  // An all-zero duration counts as unset, whether or not the field is present.
  const bool set = d.seconds() != 0 || d.nanos() != 0;
  return std::chrono::duration_cast<std::chrono::milliseconds>(
      config::DurationOr(set, d, fallback));
}

// The links of a `link` run: the top-level fields (when a server is set) plus `links`.
std::vector<ZlayerLink> EffectiveLinks(const ZlayerConfig& z) {
  std::vector<ZlayerLink> links;
  if (!z.server().empty() || !z.token().empty() || z.service_size() > 0) {
    ZlayerLink link;
    link.set_server(z.server());
    link.set_token(z.token());
    *link.mutable_service() = z.service();
    link.set_tls_ca(z.tls_ca());
    link.set_tls_skip_verify(z.tls_skip_verify());
    link.set_data_channels(z.data_channels());
    links.push_back(link);
  }
  for (const auto& l : z.links()) links.push_back(l);
  return links;
}

void ValidateLink(const ZlayerLink& link, const std::string& path,
                  std::vector<ConfigIssue>& issues) {
  std::string error;
  if (link.server().empty()) {
    issues.push_back({path + "server", "required: ws[s]://HOST:PORT/tunnel/v1"});
  } else if (!transport::WsUrl::Parse(link.server(), error)) {
    issues.push_back({path + "server", "'" + link.server() + "': " + error});
  }
  if (link.token().empty()) issues.push_back({path + "token", "required (non-empty)"});
  if (link.service_size() == 0) {
    issues.push_back({path + "service", "at least one NAME:LOCAL_PORT[:REMOTE_PORT][/udp]"});
  }
  for (int i = 0; i < link.service_size(); ++i) {
    if (!ServiceSpec::Parse(link.service(i), error)) {
      issues.push_back({path + "service[" + std::to_string(i) + "]", error});
    }
  }
  if (!link.tls_ca().empty() && link.tls_skip_verify()) {
    issues.push_back({path + "tls_skip_verify", "contradicts tls_ca: give one or the other"});
  }
  if (!link.data_channels().empty() && !ParseDataChannels(link.data_channels())) {
    issues.push_back({path + "data_channels",
                      "'" + link.data_channels() + "': expected auto, shared or per-connection"});
  }
}

class ZlayerBackend final : public Backend {
 public:
  void Validate(const config::v1::Tunnel& config, std::vector<ConfigIssue>& issues) const override {
    const auto& z = config.zlayer();
    std::string error;
    if (config.mode() == "serve") {
      if (z.listen().empty()) {
        issues.push_back({"zlayer.listen", "required: HOST:PORT of the WebSocket listener"});
      } else if (!transport::HostPort::Parse(z.listen(), error)) {
        issues.push_back({"zlayer.listen", "'" + z.listen() + "': " + error});
      }
      if (z.tls_cert().empty() != z.tls_key().empty()) {
        issues.push_back({z.tls_cert().empty() ? "zlayer.tls_cert" : "zlayer.tls_key",
                          "TLS needs both --tls-cert and --tls-key"});
      }
      if (!z.ports().empty() && !PortPool::Parse(z.ports(), error)) {
        issues.push_back({"zlayer.ports", error});
      }
      if (z.tokens().empty()) {
        issues.push_back({"zlayer.tokens", "required: file of SHA-256 token hashes"});
      } else {
        TokenStore store;
        if (!store.LoadFile(z.tokens(), error)) issues.push_back({"zlayer.tokens", error});
      }
      const auto interval = Millis(z.heartbeat_interval(), std::chrono::seconds(30));
      const auto timeout = Millis(z.heartbeat_timeout(), std::chrono::seconds(40));
      if (timeout <= interval) {
        issues.push_back({"zlayer.heartbeat_timeout", "must exceed heartbeat_interval"});
      }
      for (auto& issue : net::CheckServerLimits(net::ServerLimitsFrom(z), "zlayer.")) {
        issues.push_back({std::move(issue.field), std::move(issue.reason)});
      }
      if (z.has_max_ports_per_token() && !z.ports().empty()) {
        if (const auto pool = PortPool::Parse(z.ports(), error);
            pool && z.max_ports_per_token() > pool->high() - pool->low() + 1u) {
          issues.push_back({"zlayer.max_ports_per_token",
                            std::to_string(z.max_ports_per_token()) +
                                " is more than the ports in zlayer.ports (" + z.ports() + ")"});
        }
      }
    } else if (config.mode() == "link") {
      const auto links = EffectiveLinks(z);
      if (links.empty())
        issues.push_back({"zlayer.server", "required: ws[s]://HOST:PORT/tunnel/v1"});
      // The top-level link (if any) comes first, then links[0..].
      const std::size_t first_listed = links.size() - static_cast<std::size_t>(z.links_size());
      for (std::size_t i = 0; i < links.size(); ++i) {
        const std::string path = i < first_listed
                                     ? "zlayer."
                                     : "zlayer.links[" + std::to_string(i - first_listed) + "].";
        ValidateLink(links[i], path, issues);
      }
    } else if (config.mode() == "access") {
      if (z.endpoint().empty()) {
        issues.push_back({"zlayer.endpoint", "required: HOST:PORT to forward to"});
      } else if (!transport::HostPort::Parse(z.endpoint(), error)) {
        issues.push_back({"zlayer.endpoint", "'" + z.endpoint() + "': " + error});
      }
      if (!z.local().empty() && !transport::HostPort::Parse(z.local(), error)) {
        issues.push_back({"zlayer.local", "'" + z.local() + "': " + error});
      }
    } else {
      issues.push_back({"mode", "the zlayer backend runs as serve, link or access (not '" +
                                    config.mode() + "')"});
    }
  }

  int Run(Runtime& runtime) override {
    tunnelkit::TuneAllocator();
    std::vector<ConfigIssue> issues;
    Validate(runtime.config(), issues);
    if (!issues.empty()) {
      for (const auto& issue : issues) {
        runtime.logger()->error("invalid configuration: {}: {}", issue.path, issue.reason);
      }
      return 2;
    }
    const auto& mode = runtime.config().mode();
    if (mode == "serve") return RunServer(runtime);
    if (mode == "link") return RunLinks(runtime);
    return RunAccess(runtime);
  }

 private:
  static int RunServer(Runtime& runtime) {
    const auto& z = runtime.config().zlayer();
    std::string error;
    ServerOptions options;
    const auto listen = transport::HostPort::Parse(z.listen(), error);
    options.ws.host = listen->host;
    options.ws.port = listen->port;
    options.ws.tls_cert = z.tls_cert();
    options.ws.tls_key = z.tls_key();
    options.public_host = z.public_host();
    if (!z.ports().empty()) options.ports = *PortPool::Parse(z.ports(), error);
    options.tokens.LoadFile(z.tokens(), error);
    options.heartbeat_interval = Millis(z.heartbeat_interval(), options.heartbeat_interval);
    options.heartbeat_timeout = Millis(z.heartbeat_timeout(), options.heartbeat_timeout);
    options.udp_idle_timeout = Millis(z.udp_idle_timeout(), options.udp_idle_timeout);
    options.limits = net::ServerLimitsFrom(z);
    if (z.has_max_ports_per_token()) options.max_ports_per_token = z.max_ports_per_token();
    TunnelServer server(runtime.io(), std::move(options), runtime.logger());
    if (!server.Start(error)) {
      runtime.logger()->error("{}", error);
      return 1;
    }
    runtime.SetState("serving");
    runtime.SetReadiness([&] {
      return admin::Readiness{true, static_cast<std::uint32_t>(server.stats().tunnels)};
    });
    runtime.SetDetails([&] {
      const auto stats = server.stats();
      nlohmann::json details = {{"listen_port", server.listen_port()},
                                {"tunnels", stats.tunnels},
                                {"services", stats.services},
                                {"connections", stats.connections},
                                {"auth_failures", stats.auth_failures},
                                {"auth_refusals", stats.auth_refusals},
                                {"public_connections", stats.public_connections},
                                {"public_refusals", stats.public_refusals},
                                {"data_sockets", stats.data_sockets},
                                {"shared_data_sockets", stats.shared_data_sockets},
                                {"shared_streams", stats.shared_streams}};
      return details.dump();
    });
    runtime.OnStop([&] {
      runtime.SetState("stopping");
      server.Stop("server shutting down", [&] { runtime.io().stop(); });
    });
    runtime.io().run();
    return 0;
  }

  // An agent's options from one `zlayer.links` entry (validated before start).
  static AgentOptions LinkOptions(const config::v1::Tunnel& config, const ZlayerLink& link) {
    const auto& z = config.zlayer();
    std::string error;
    AgentOptions options;
    options.server = *transport::WsUrl::Parse(link.server(), error);
    options.name = link.name().empty() ? "link " + options.server.ToString() : link.name();
    options.token = link.token();
    for (const auto& s : link.service()) options.services.push_back(*ServiceSpec::Parse(s, error));
    options.tls.tls_ca = link.tls_ca();
    options.tls.tls_skip_verify = link.tls_skip_verify();
    if (!link.data_channels().empty()) {
      options.data_channels = *ParseDataChannels(link.data_channels());
    }
    if (!z.local_host().empty()) options.local_host = z.local_host();
    if (config.has_reconnect()) {
      // The loader fills in the core's defaults (first delay 1 s); ZLayer agents start at
      // 5 s, so an untouched 1 s base means "the zlayer default".
      const auto base = options.backoff.base;
      options.backoff = session::BackoffPolicyFromConfig(config.reconnect());
      if (options.backoff.base == std::chrono::milliseconds(1000)) options.backoff.base = base;
    }
    return options;
  }

  // The admin endpoint's /tunnels details: every link with its state and services.
  static std::string LinksJson(const std::vector<std::unique_ptr<TunnelAgent>>& agents) {
    nlohmann::json links = nlohmann::json::array();
    for (const auto& agent : agents) {
      auto& sup = agent->supervisor();
      nlohmann::json services = nlohmann::json::array();
      for (const auto& r : agent->registered()) {
        services.push_back(
            {{"name", r.spec.name},
             {"protocol", r.spec.protocol == codec::ServiceProtocol::kUdp ? "udp" : "tcp"},
             {"local_port", r.spec.local_port},
             {"public_port", r.public_port},
             {"registered", r.ok},
             {"error", r.error}});
      }
      links.push_back({{"name", sup.name()},
                       {"state", session::LinkStateName(sup.state())},
                       {"attempts", sup.attempts()},
                       {"reconnects", sup.reconnects()},
                       {"last_reason", sup.last_reason()},
                       {"services", services}});
    }
    return nlohmann::json{{"links", links}}.dump();
  }

  static int RunLinks(Runtime& runtime) {
    const auto& config = runtime.config();
    const auto& z = config.zlayer();
    std::vector<std::unique_ptr<TunnelAgent>> agents;
    for (const auto& link : EffectiveLinks(z)) {
      std::string error;
      auto agent =
          std::make_unique<TunnelAgent>(runtime.io(), LinkOptions(config, link), runtime.logger());
      if (!agent->Start(error)) {
        runtime.logger()->error("{}", error);
        return 1;
      }
      // Link state and reconnects in /metrics (tunnelkit_link_up{tunnel,link} and counters).
      session::ExportLinkMetrics(agent->supervisor(), runtime.metrics(), runtime.logger()->name(),
                                 agent->supervisor().Status().name);
      agents.push_back(std::move(agent));
    }
    int status = 0;
    std::size_t finished = 0;
    for (auto& agent : agents) {
      asio::co_spawn(
          runtime.io(),
          [&, a = agent.get()]() -> asio::awaitable<void> {
            const auto result = co_await a->Run();
            if (result.failed()) {
              runtime.logger()->error("{}: {}", a->supervisor().name(), result.Describe());
              if (status == 0) status = session::ExitStatusFor(result);
            }
            if (++finished == agents.size()) runtime.io().stop();
          },
          asio::detached);
    }
    // Admin: /tunnels shows every link with its state and services; /ready once all are up.
    auto connected = [&] {
      std::uint32_t n = 0;
      for (const auto& agent : agents) {
        n += agent->supervisor().state() == session::LinkState::kConnected ? 1 : 0;
      }
      return n;
    };
    for (auto& agent : agents) {
      agent->supervisor().AddObserver([&](const session::LinkStateChange&) {
        const auto n = connected();
        runtime.SetState(n == agents.size() ? "connected" : n > 0 ? "degraded" : "connecting");
      });
    }
    runtime.SetReadiness([&] {
      const auto n = connected();
      return admin::Readiness{n == agents.size(), n};
    });
    runtime.SetDetails([&] { return LinksJson(agents); });
    runtime.OnStop([&] {
      runtime.SetState("stopping");
      for (auto& agent : agents) agent->Stop();
    });
    runtime.io().run();
    return status;
  }

  static int RunAccess(Runtime& runtime) {
    const auto& z = runtime.config().zlayer();
    std::string error;
    AccessOptions options;
    const auto endpoint = transport::HostPort::Parse(z.endpoint(), error);
    options.endpoint_host = endpoint->host;
    options.endpoint_port = std::to_string(endpoint->port);
    if (!z.local().empty()) {
      const auto local = transport::HostPort::Parse(z.local(), error);
      options.local_host = local->host.empty() ? "127.0.0.1" : local->host;
      options.local_port = local->port;
    }
    options.ttl = Millis(z.ttl(), std::chrono::milliseconds(0));
    AccessForwarder forwarder(runtime.io(), options, runtime.logger());
    if (!forwarder.Start(error)) {
      runtime.logger()->error("{}", error);
      return 1;
    }
    forwarder.OnDone([&] { runtime.io().stop(); });
    runtime.OnStop([&] { forwarder.Stop("stopped"); });
    runtime.io().run();
    return 0;
  }
};

}  // namespace

std::unique_ptr<Backend> MakeZlayerBackend() {
  return std::make_unique<ZlayerBackend>();
}

}  // namespace tunnelkit::zlayer
