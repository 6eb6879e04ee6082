#include "ferro_backend.hpp"

#include <tuple>

#include <google/protobuf/duration.pb.h>
#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>

#include "client/client.hpp"
#include "mux/connection.hpp"
#include "server/server.hpp"
#include "tunnelkit/config/duration.hpp"
#include "tunnelkit/memory_trim.hpp"
#include "tunnelkit/net/server_limits.hpp"
#include "tunnelkit/net/url.hpp"
#include "tunnelkit/origin/origin_proxy.hpp"
#include "tunnelkit/origin/router.hpp"
#include "tunnelkit/runtime.hpp"
#include "tunnelkit/session/backoff.hpp"
#include "tunnelkit/session/supervisor.hpp"

namespace tunnelkit::ferro {

const BackendInfo kBackendInfo{"ferro", TUNNELKIT_VERSION_STRING, kRoleClient | kRoleServer,
                               "self-hosted TCP/TLS multiplexed tunnel, FerroTunnel 1.x wire"};

namespace {

// HTTP and WebSocket streams opened by the server carry raw HTTP/1.1: they go through the
// core origin proxy (ingress rules, pooled origin connections, 502/504, X-Forwarded-For).
// A free function with by-value parameters keeps the coroutine frame independent of the
// caller's temporaries.
boost::asio::awaitable<void> ServeThroughProxy(std::shared_ptr<origin::OriginProxy> proxy,
                                               std::shared_ptr<MuxStream> stream) {
  co_await proxy->ServeHttpStream(*stream);
  co_await stream->ShutdownWrite();
}

std::chrono::milliseconds DurationOr(bool has, const google::protobuf::Duration& d,
                                     std::chrono::milliseconds fallback) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
      config::DurationOr(has, d, fallback));
}

// scheme://host[:port][/...] -> host and port (default from the scheme).
bool ParseOriginUrl(const std::string& url, std::string& host, std::string& port,
                    std::string& error) {
  const auto parts = net::SplitUrl(url);
  if (!parts) {
    error = "'" + url + "' is not scheme://host:port";
    return false;
  }
  const std::string scheme(parts->scheme);
  if (scheme != "http" && scheme != "tcp" && scheme != "ws") {
    error = "scheme '" + scheme + "' is not supported by ferro (http://, ws://, tcp://)";
    return false;
  }
  const auto authority = net::SplitAuthority(parts->authority);
  if (!authority) {
    error = "'" + url + "': " + authority.message();
    return false;
  }
  host = std::string(authority->host);
  port = std::string(authority->port);
  if (port.empty()) port = scheme == "tcp" ? "" : "80";
  if (host.empty() || port.empty()) {
    error = "'" + url + "' needs a host and a port";
    return false;
  }
  return true;
}

// The origin of a client: --url, else the first ingress rule's service.
std::string OriginUrl(const config::v1::Tunnel& config) {
  if (!config.url().empty()) return config.url();
  if (config.ingress_size() > 0) return config.ingress(0).service();
  return {};
}

class FerroBackend final : public Backend {
 public:
  void Validate(const config::v1::Tunnel& config, std::vector<ConfigIssue>& issues) const override {
    const auto& f = config.ferro();
    auto require = [&](bool ok, const char* path, const char* reason) {
      if (!ok) issues.push_back({path, reason});
    };
    require(!f.token().empty(), "ferro.token", "required (the shared tunnel token)");
    if (!f.token().empty()) {
      require(f.token().size() <= 256, "ferro.token", "longer than 256 bytes");
      bool printable = true;
      for (char c : f.token()) printable = printable && c >= 0x20 && c < 0x7F;
      require(printable, "ferro.token", "must be printable ASCII");
    }
    if (config.mode() == "serve") {
      require(!f.http().empty() || !f.tcp().empty(), "ferro.http",
              "a public ingress is required (--http ADDR and/or --tcp ADDR)");
      for (const auto& [path, value] :
           {std::pair{"ferro.listen", f.listen()}, std::pair{"ferro.http", f.http()},
            std::pair{"ferro.tcp", f.tcp()}}) {
        if (value.empty()) continue;
        try {
          ParseListenAddress(value);
        } catch (const std::exception& e) {
          issues.push_back({path, e.what()});
        }
      }
      require(f.tls_cert().empty() == f.tls_key().empty(), "ferro.tls_cert",
              "--tls-cert and --tls-key go together");
      require(f.tls_ca().empty() || !f.tls_cert().empty(), "ferro.tls_ca",
              "client certificates (--tls-ca) need TLS (--tls-cert, --tls-key)");
      for (const auto& [path, has, value] :
           {std::tuple{"ferro.request_body_timeout", f.has_request_body_timeout(),
                       f.request_body_timeout()},
            std::tuple{"ferro.response_timeout", f.has_response_timeout(), f.response_timeout()}}) {
        require(!has || value.seconds() > 0 || (value.seconds() == 0 && value.nanos() >= 1000000),
                path, "must be at least 1ms");
      }
      require(f.max_stream_window() == 0 ||
                  (f.max_stream_window() >= 64 * 1024 && f.max_stream_window() <= 16 * 1024 * 1024),
              "ferro.max_stream_window", "must be 65536..16777216 bytes");
      for (auto& issue : net::CheckServerLimits(net::ServerLimitsFrom(f), "ferro.")) {
        issues.push_back({std::move(issue.field), std::move(issue.reason)});
      }
    } else if (config.mode() == "run") {
      require(!f.server().empty(), "ferro.server", "required (HOST:PORT of the tunnel server)");
      if (!f.server().empty()) {
        require(f.server().find(':') != std::string::npos, "ferro.server", "is not HOST:PORT");
      }
      std::string host, port, error;
      const std::string url = OriginUrl(config);
      if (url.empty()) {
        issues.push_back({"url", "required (the local service, e.g. http://127.0.0.1:3000)"});
      } else if (!ParseOriginUrl(url, host, port, error)) {
        issues.push_back({"url", error});
      }
      // Ingress rules are refused here, before anything starts, not when a request arrives.
      origin::Router::Compile(config, issues);
      require(!f.tls_skip_verify() || f.tls(), "ferro.tls_skip_verify", "only with --tls");
      require(f.tls_cert().empty() == f.tls_key().empty(), "ferro.tls_cert",
              "--tls-cert and --tls-key go together");
      if (f.tunnel_id().size() > 256) issues.push_back({"ferro.tunnel_id", "longer than 256"});
    } else {
      issues.push_back({"mode",
                        "ferro runs as a client (tunnelctl --backend ferro) or a server "
                        "(tunnelctl serve --backend ferro)"});
    }
  }

  int Run(Runtime& runtime) override {
    TuneAllocator();
    const auto& config = runtime.config();
    std::vector<ConfigIssue> issues;
    Validate(config, issues);
    if (!issues.empty()) {
      for (const auto& issue : issues) {
        runtime.logger()->error("config: {}: {}", issue.path, issue.reason);
      }
      return 2;
    }
    try {
      return config.mode() == "serve" ? RunServer(runtime) : RunClient(runtime);
    } catch (const std::exception& e) {
      runtime.logger()->error("{}", e.what());
      return 1;
    }
  }

 private:
  int RunServer(Runtime& runtime) {
    const auto& f = runtime.config().ferro();
    ServerSettings settings;
    settings.limits = net::ServerLimitsFrom(f);
    if (!f.listen().empty()) settings.listen = f.listen();
    settings.http = f.http();
    settings.tcp = f.tcp();
    settings.token = f.token();
    settings.domain = f.domain();
    if (!f.tls_cert().empty()) {
      settings.tls.emplace();
      settings.tls->cert_file = f.tls_cert();
      settings.tls->key_file = f.tls_key();
      settings.tls->client_ca_file = f.tls_ca();
    }
    settings.session_timeout =
        DurationOr(f.has_session_timeout(), f.session_timeout(), settings.session_timeout);
    settings.handshake_timeout =
        DurationOr(f.has_handshake_timeout(), f.handshake_timeout(), settings.handshake_timeout);
    settings.request_body_timeout = DurationOr(
        f.has_request_body_timeout(), f.request_body_timeout(), settings.request_body_timeout);
    settings.response_timeout =
        DurationOr(f.has_response_timeout(), f.response_timeout(), settings.response_timeout);
    settings.reconnect_grace =
        DurationOr(f.has_reconnect_grace(), f.reconnect_grace(), settings.reconnect_grace);
    if (f.max_stream_window() != 0) settings.max_stream_window = f.max_stream_window();
    auto server = std::make_shared<FerroServer>(runtime.io(), settings, runtime.logger());
    server->Start();  // throws on a bind or TLS file problem: exit 1 with the reason
    runtime.OnStop([server, &runtime] {
      server->Stop();
      runtime.io().stop();
    });
    runtime.io().run();
    return 0;
  }

  int RunClient(Runtime& runtime) {
    const auto& config = runtime.config();
    const auto& f = config.ferro();
    ClientSettings settings;
    settings.server = f.server();
    settings.token = f.token();
    if (!f.tunnel_id().empty()) settings.tunnel_id = f.tunnel_id();
    std::string error;
    ParseOriginUrl(OriginUrl(config), settings.origin_host, settings.origin_port, error);
    settings.tls = f.tls();
    settings.tls_settings.ca_file = f.tls_ca();
    settings.tls_settings.cert_file = f.tls_cert();
    settings.tls_settings.key_file = f.tls_key();
    settings.tls_settings.insecure_skip_verify = f.tls_skip_verify();
    settings.tls_server_name = f.tls_server_name();
    settings.heartbeat_interval =
        DurationOr(f.has_heartbeat_interval(), f.heartbeat_interval(), settings.heartbeat_interval);
    settings.handshake_timeout =
        DurationOr(f.has_handshake_timeout(), f.handshake_timeout(), settings.handshake_timeout);
    settings.flow_control = !f.no_flow_control();
    settings.backoff = session::BackoffPolicyFromConfig(config.reconnect());

    std::vector<ConfigIssue> issues;
    auto router = origin::Router::Compile(config, issues);
    if (!router) {
      for (const auto& issue : issues) {
        runtime.logger()->error("config: {}: {}", issue.path, issue.reason);
      }
      return 2;
    }
    auto proxy = std::make_shared<origin::OriginProxy>(
        runtime.io().get_executor(), std::move(*router), runtime.MakeLogger("origin"));

    auto client = std::make_shared<FerroClient>(runtime.io(), settings, runtime.logger());
    client->SetStreamServer([proxy](std::shared_ptr<MuxStream> stream) {
      return ServeThroughProxy(proxy, std::move(stream));
    });
    int status = 0;
    runtime.OnStop([client] { client->Stop(); });
    boost::asio::co_spawn(runtime.io(), client->Run(),
                          [&](std::exception_ptr e, session::SupervisorResult result) {
                            if (e) {
                              try {
                                std::rethrow_exception(e);
                              } catch (const std::exception& ex) {
                                runtime.logger()->error("{}", ex.what());
                              }
                              status = 1;
                            } else {
                              status = session::ExitStatusFor(result);
                            }
                            runtime.io().stop();
                          });
    runtime.io().run();
    return status;
  }
};

}  // namespace

std::unique_ptr<Backend> MakeFerroBackend() {
  return std::make_unique<FerroBackend>();
}

}  // namespace tunnelkit::ferro
