// Shape checks of addresses, URLs and ingress services. They look at text only (no DNS).
#include <arpa/inet.h>

#include <charconv>

#include "field_access.hpp"
#include "tunnelkit/config/config_loader.hpp"
#include "tunnelkit/net/host_name.hpp"

namespace tunnelkit::config {

namespace {

// Configuration takes '_' (service labels appear in real setups) and the absolute form
// "example.com.".
bool ValidHostName(std::string_view host) {
  return net::CheckHostName(host, {.allow_underscore = true, .allow_trailing_dot = true}).ok();
}

// "" if fine. `port` is the text after the colon.
std::string CheckPort(std::string_view port, int min_port) {
  if (port.empty()) return "missing port";
  int value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (ec == std::errc::result_out_of_range ||
      (ec == std::errc() && end == port.data() + port.size() &&
       (value < min_port || value > 65535))) {
    return "port out of range " + std::to_string(min_port) + "..65535";
  }
  if (ec != std::errc() || end != port.data() + port.size() || port.front() == '+' ||
      port.front() == '-') {
    return "invalid port " + detail::Quote(port);
  }
  return {};
}

// Splits HOST[:PORT] (brackets for IPv6). "" if fine.
std::string CheckAuthority(std::string_view authority, bool port_required, int min_port) {
  std::string_view host;
  std::string_view port;
  bool has_port = false;
  if (!authority.empty() && authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string_view::npos) return "missing ']' after the IPv6 address";
    host = authority.substr(1, close - 1);
    std::string copy(host);
    in6_addr addr{};
    if (inet_pton(AF_INET6, copy.c_str(), &addr) != 1) {
      return "invalid IPv6 address " + detail::Quote(host);
    }
    auto rest = authority.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return "expected ':' after ']'";
      port = rest.substr(1);
      has_port = true;
    }
  } else {
    auto colon = authority.rfind(':');
    if (colon != std::string_view::npos) {
      host = authority.substr(0, colon);
      port = authority.substr(colon + 1);
      has_port = true;
      if (host.find(':') != std::string_view::npos) {
        return "IPv6 addresses need brackets: [ADDRESS]:PORT";
      }
    } else {
      host = authority;
    }
    if (host.empty()) return "missing host (use 0.0.0.0 or 127.0.0.1 for a listener)";
    if (!ValidHostName(host)) return "invalid host " + detail::Quote(host);
  }
  if (!has_port) {
    if (port_required) return "missing port (expected HOST:PORT)";
    return {};
  }
  return CheckPort(port, min_port);
}

}  // namespace

std::string CheckHostPort(std::string_view value, int min_port) {
  if (value.empty()) return "empty address";
  return CheckAuthority(value, true, min_port);
}

std::string CheckUrl(std::string_view value, const std::vector<std::string>& schemes) {
  auto sep = value.find("://");
  std::string list;
  for (const auto& s : schemes) list += (list.empty() ? "" : ", ") + s;
  if (sep == std::string_view::npos)
    return "not a URL (expected " + list + " scheme://HOST[:PORT])";
  std::string scheme(value.substr(0, sep));
  for (auto& c : scheme) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  bool known = false;
  for (const auto& s : schemes) known = known || s == scheme;
  if (!known) return "unsupported scheme " + detail::Quote(scheme) + " (expected " + list + ")";
  auto rest = value.substr(sep + 3);
  auto end = rest.find_first_of("/?#");
  auto authority = rest.substr(0, end);
  if (authority.find('@') != std::string_view::npos) return "credentials in URLs are not supported";
  if (authority.empty()) return "missing host";
  for (char c : value) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f)
      return "URL contains spaces or control characters";
  }
  auto reason = CheckAuthority(authority, false, 1);
  if (reason.rfind("missing host", 0) == 0) return "missing host";
  return reason;
}

std::string CheckService(std::string_view value) {
  if (value == "hello_world") return {};
  if (value.rfind("http_status:", 0) == 0) {
    auto code = value.substr(12);
    int status = 0;
    auto [end, ec] = std::from_chars(code.data(), code.data() + code.size(), status);
    if (ec != std::errc() || end != code.data() + code.size() || code.empty()) {
      return "invalid status in http_status:N";
    }
    if (status < 100 || status > 599) return "status out of range 100..599";
    return {};
  }
  if (value.rfind("unix:", 0) == 0) {
    if (value.size() == 5) return "missing socket path after unix:";
    return {};
  }
  if (value.find("://") == std::string_view::npos) {
    return "unsupported service (expected http://, https://, tcp://, ws://, wss://, unix:PATH, "
           "hello_world or http_status:N)";
  }
  return CheckUrl(value, {"http", "https", "tcp", "ws", "wss"});
}

bool IsSecretField(std::string_view name) {
  auto ends_with = [&](std::string_view suffix) {
    return name.size() >= suffix.size() && name.substr(name.size() - suffix.size()) == suffix;
  };
  return name == "token" || name == "secret" || name == "password" || ends_with("_token") ||
         ends_with("_secret") || ends_with("_password");
}

}  // namespace tunnelkit::config
