#include "tunnelkit/net/url.hpp"

#include <string>

namespace tunnelkit::net {

Result<Authority> SplitAuthority(std::string_view text) {
  Authority out;
  std::string_view rest;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos) {
      return Error::Invalid("missing ']' after the IPv6 address");
    }
    out.host = text.substr(1, close - 1);
    rest = text.substr(close + 1);
    if (!rest.empty() && rest.front() != ':') {
      return Error::Invalid("unexpected '" + std::string(rest) + "' after ']'");
    }
  } else {
    const auto colon = text.find(':');
    if (colon != std::string_view::npos && text.find(':', colon + 1) != std::string_view::npos) {
      return Error::Invalid("an IPv6 address needs brackets ([" + std::string(text) + "])");
    }
    out.host = text.substr(0, colon);
    rest = colon == std::string_view::npos ? std::string_view() : text.substr(colon);
  }
  if (!rest.empty()) {
    out.has_port = true;
    out.port = rest.substr(1);
  }
  return out;
}

Result<UrlParts> SplitUrl(std::string_view text) {
  const auto sep = text.find("://");
  if (sep == std::string_view::npos) return Error::Invalid("not scheme://host");
  if (sep == 0) return Error::Invalid("missing scheme before ://");
  UrlParts out;
  out.scheme = text.substr(0, sep);
  const auto rest = text.substr(sep + 3);
  const auto end = rest.find_first_of("/?#");
  out.authority = rest.substr(0, end);
  if (end != std::string_view::npos) out.target = rest.substr(end);
  return out;
}

std::string JoinHostPort(std::string_view host, unsigned port) {
  const bool v6 = host.find(':') != std::string_view::npos;
  std::string out;
  out.reserve(host.size() + 8);
  if (v6) out += '[';
  out += host;
  if (v6) out += ']';
  out += ':';
  out += std::to_string(port);
  return out;
}

}  // namespace tunnelkit::net
