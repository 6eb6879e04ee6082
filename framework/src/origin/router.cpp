#include "tunnelkit/origin/router.hpp"

#include <algorithm>
#include <charconv>

#include "tunnelkit/config/duration.hpp"
#include "tunnelkit/net/url.hpp"

namespace tunnelkit::origin {

namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

bool ValidPort(std::string_view port) {
  unsigned value = 0;
  auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  return ec == std::errc() && p == port.data() + port.size() && value > 0 && value <= 65535;
}

// "host:port", "[v6]:port" or "host" (port empty).
bool SplitHostPort(std::string_view authority, std::string& host, std::string& port) {
  if (authority.empty()) return false;
  const auto parts = net::SplitAuthority(authority);
  if (!parts) return false;
  host = std::string(parts->host);
  if (!parts->has_port) return true;
  port = std::string(parts->port);
  return (authority.front() == '[' || !host.empty()) && ValidPort(port);
}

std::chrono::milliseconds Millis(const google::protobuf::Duration& d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(config::FromProto(d));
}

}  // namespace

Result<Service> ParseService(std::string_view text) {
  Service s;
  s.text = std::string(text);
  if (text == "hello_world") {
    s.kind = Service::Kind::kHelloWorld;
    return s;
  }
  if (text.starts_with("http_status:")) {
    auto code = text.substr(12);
    auto [p, ec] = std::from_chars(code.data(), code.data() + code.size(), s.status);
    if (ec != std::errc() || p != code.data() + code.size() || s.status < 100 || s.status > 599) {
      return Error::Invalid("http_status needs a status code 100-599");
    }
    s.kind = Service::Kind::kHttpStatus;
    return s;
  }
  if (text.starts_with("unix:")) {
    s.kind = Service::Kind::kUnix;
    s.path = std::string(text.substr(5));
    if (s.path.starts_with("//")) s.path = s.path.substr(2);
    if (s.path.empty()) {
      return Error::Invalid("unix: needs a socket path");
    }
    return s;
  }
  struct Scheme {
    std::string_view prefix;
    Service::Kind kind;
    const char* default_port;
  };
  for (const Scheme& scheme : {Scheme{"http://", Service::Kind::kHttp, "80"},
                               Scheme{"https://", Service::Kind::kHttps, "443"},
                               Scheme{"tcp://", Service::Kind::kTcp, nullptr}}) {
    if (!text.starts_with(scheme.prefix)) continue;
    auto authority = text.substr(scheme.prefix.size());
    if (!authority.empty() && authority.back() == '/') authority.remove_suffix(1);
    if (authority.find('/') != std::string_view::npos) {
      return Error::Invalid("a service URL has no path (got '" + std::string(text) + "')");
    }
    if (!SplitHostPort(authority, s.host, s.port)) {
      return Error::Invalid("'" + std::string(text) + "' is not scheme://host:port");
    }
    if (s.port.empty()) {
      if (!scheme.default_port) {
        return Error::Invalid("tcp:// needs a port");
      }
      s.port = scheme.default_port;
    }
    s.kind = scheme.kind;
    return s;
  }
  return Error::Invalid(
      "unknown service '" + std::string(text) +
      "' (expected http://, https://, tcp://, unix:, hello_world or http_status:N)");
}

OriginOptions ApplyOriginRequest(OriginOptions base, const config::v1::OriginRequest& o) {
  if (o.no_tls_verify()) base.no_tls_verify = true;
  if (!o.ca_pool().empty()) base.ca_pool = o.ca_pool();
  if (o.has_connect_timeout()) base.connect_timeout = Millis(o.connect_timeout());
  if (o.has_response_timeout()) base.response_timeout = Millis(o.response_timeout());
  if (!o.http_host_header().empty()) base.http_host_header = o.http_host_header();
  if (o.keep_alive_connections() != 0) base.keep_alive_connections = o.keep_alive_connections();
  if (o.has_keep_alive_timeout()) base.keep_alive_timeout = Millis(o.keep_alive_timeout());
  return base;
}

std::optional<Router> Router::Compile(const config::v1::Tunnel& config,
                                      std::vector<ConfigIssue>& issues) {
  std::size_t before = issues.size();
  Router router;
  OriginOptions defaults = ApplyOriginRequest({}, config.origin_request());
  if (!config.url().empty() && config.ingress_size() > 0) {
    issues.push_back({"url", "give either url or ingress rules, not both"});
  } else if (!config.url().empty()) {
    auto service = ParseService(config.url());
    if (!service) {
      issues.push_back({"url", service.message()});
    } else {
      router.Add({"", "", *service, defaults});
    }
  } else if (config.ingress_size() == 0) {
    issues.push_back({"ingress", "no url and no ingress rules: nothing to serve"});
  }
  for (int i = 0; i < config.ingress_size(); ++i) {
    const auto& rule = config.ingress(i);
    std::string prefix = "ingress[" + std::to_string(i) + "].";
    auto service = ParseService(rule.service());
    if (!service) issues.push_back({prefix + "service", service.message()});
    std::string host = Lower(rule.hostname());
    if (host.find('*') != std::string::npos &&
        (!host.starts_with("*.") || host.find('*', 1) != std::string::npos || host.size() < 3)) {
      issues.push_back({prefix + "hostname", "a wildcard is only allowed as '*.domain'"});
    }
    if (!rule.path().empty() && rule.path().front() != '/') {
      issues.push_back({prefix + "path", "a path prefix starts with '/'"});
    }
    if (service) {
      router.Add(
          {host, rule.path(), *service, ApplyOriginRequest(defaults, rule.origin_request())});
    }
  }
  if (issues.size() != before) return std::nullopt;
  return router;
}

Router Router::CatchAll(Service service, OriginOptions options) {
  Router router;
  router.Add({"", "", std::move(service), std::move(options)});
  return router;
}

void Router::Add(Rule rule) {
  rule.hostname = Lower(rule.hostname);
  rules_.push_back(std::move(rule));
}

const Rule* Router::Match(std::string_view host, std::string_view path) const {
  // Strip the port ("example.com:8080", "[::1]:80") and compare case-insensitively.
  if (!host.empty() && host.front() == '[') {
    auto close = host.find(']');
    host = close == std::string_view::npos ? host : host.substr(1, close - 1);
  } else if (auto colon = host.rfind(':'); colon != std::string_view::npos) {
    host = host.substr(0, colon);
  }
  std::string h = Lower(host);
  if (!h.empty() && h.back() == '.') h.pop_back();
  auto q = path.find('?');
  if (q != std::string_view::npos) path = path.substr(0, q);
  for (const Rule& rule : rules_) {
    if (!rule.hostname.empty()) {
      if (rule.hostname.starts_with("*.")) {
        std::string_view suffix = std::string_view(rule.hostname).substr(1);  // ".example.com"
        if (h.size() <= suffix.size() || !std::string_view(h).ends_with(suffix)) continue;
      } else if (h != rule.hostname) {
        continue;
      }
    }
    if (!rule.path.empty() && !path.starts_with(rule.path)) continue;
    return &rule;
  }
  return nullptr;
}

}  // namespace tunnelkit::origin
