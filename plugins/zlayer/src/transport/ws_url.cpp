#include "transport/ws_url.hpp"

#include <charconv>

#include "tunnelkit/net/url.hpp"

namespace tunnelkit::zlayer::transport {

namespace {

bool ParsePort(std::string_view text, int& port) {
  if (text.empty() || text.size() > 5) return false;
  int value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < 0 || value > 65535) {
    return false;
  }
  port = value;
  return true;
}

// Splits "host:port" or "[v6]:port"; the port part may be missing when allowed.
bool SplitHostPort(std::string_view text, std::string& host, std::string_view& port_text) {
  const auto authority = net::SplitAuthority(text);
  if (!authority) return false;
  host = std::string(authority->host);
  port_text = authority->port;
  return true;
}

}  // namespace

std::string WsUrl::ToString() const {
  const bool v6 = host.find(':') != std::string::npos;
  return std::string(tls ? "wss://" : "ws://") + (v6 ? "[" + host + "]" : host) + ":" +
         std::to_string(port) + path;
}

std::optional<WsUrl> WsUrl::Parse(std::string_view text, std::string& error) {
  WsUrl url;
  if (text.starts_with("wss://")) {
    url.tls = true;
    text.remove_prefix(6);
  } else if (text.starts_with("ws://")) {
    text.remove_prefix(5);
  } else {
    error = "must start with ws:// or wss://";
    return std::nullopt;
  }
  const auto slash = text.find('/');
  const auto authority = text.substr(0, slash);
  if (slash != std::string_view::npos) url.path = std::string(text.substr(slash));
  std::string_view port_text;
  if (!SplitHostPort(authority, url.host, port_text) || url.host.empty()) {
    error = "missing or malformed host";
    return std::nullopt;
  }
  if (port_text.empty()) {
    url.port = url.tls ? 443 : 80;
  } else if (!ParsePort(port_text, url.port) || url.port == 0) {
    error = "invalid port '" + std::string(port_text) + "'";
    return std::nullopt;
  }
  return url;
}

std::optional<HostPort> HostPort::Parse(std::string_view text, std::string& error) {
  HostPort hp;
  std::string_view port_text;
  if (!SplitHostPort(text, hp.host, port_text) || port_text.empty()) {
    error = "expected HOST:PORT";
    return std::nullopt;
  }
  if (!ParsePort(port_text, hp.port)) {
    error = "invalid port '" + std::string(port_text) + "'";
    return std::nullopt;
  }
  return hp;
}

}  // namespace tunnelkit::zlayer::transport
