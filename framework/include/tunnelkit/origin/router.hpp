// Ingress rules: which local service answers a request, chosen by hostname and path prefix.
// First match wins, as in cloudflared's `ingress:` list.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tunnelkit/config/v1/tunnel.pb.h"
#include "tunnelkit/plugin.hpp"
#include "tunnelkit/result.hpp"

namespace tunnelkit::origin {

// A parsed service URL: http://host:port, https://host:port, tcp://host:port, unix:/path,
// hello_world, http_status:N.
struct Service {
  enum class Kind { kHttp, kHttps, kTcp, kUnix, kHelloWorld, kHttpStatus };
  Kind kind = Kind::kHttpStatus;
  std::string host;  // http/https/tcp
  std::string port;  // defaults: 80 for http, 443 for https; required for tcp
  std::string path;  // unix socket path
  int status = 404;  // http_status
  std::string text;  // the original string, for logs
  bool is_http() const { return kind != Kind::kTcp && kind != Kind::kUnix; }
};

// Parses a service string (http://, https://, tcp://, unix:, hello_world, http_status:N).
Result<Service> ParseService(std::string_view text);

// Per-rule origin settings (config::v1::OriginRequest with defaults applied).
struct OriginOptions {
  std::chrono::milliseconds connect_timeout{30'000};
  std::chrono::milliseconds response_timeout{100'000};  // to the response head; 504 after
  std::string http_host_header;                         // non-empty: rewrite Host
  bool no_tls_verify = false;
  std::string ca_pool;                       // PEM roots for https origins (empty: system roots)
  std::size_t keep_alive_connections = 100;  // idle connections kept per origin
  std::chrono::milliseconds keep_alive_timeout{90'000};
};

// `base` with the fields set in `overrides` (non-zero / non-empty) replaced.
OriginOptions ApplyOriginRequest(OriginOptions base, const config::v1::OriginRequest& overrides);

struct Rule {
  std::string hostname;  // lower case; "" = any host; "*.example.com" = any subdomain
  std::string path;      // path prefix; "" = any path
  Service service;
  OriginOptions options;
};

class Router {
 public:
  Router() = default;
  // From a tunnel configuration: `ingress` rules, or `url` as one catch-all rule (not both).
  // Problems go to `issues` with the field path ("ingress[1].service"); nullopt if any.
  static std::optional<Router> Compile(const config::v1::Tunnel& config,
                                       std::vector<ConfigIssue>& issues);
  // One rule matching everything.
  static Router CatchAll(Service service, OriginOptions options = {});

  void Add(Rule rule);
  // First rule whose hostname and path match; null if none. `host` may carry ":port" and
  // any case; `path` is the request target's path (query ignored).
  const Rule* Match(std::string_view host, std::string_view path) const;
  const std::vector<Rule>& rules() const { return rules_; }

 private:
  std::vector<Rule> rules_;
};

}  // namespace tunnelkit::origin
