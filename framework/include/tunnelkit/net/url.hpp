// Splitting URLs and authorities as flags, configuration and wire fields write them:
// scheme://HOST[:PORT][/path?query], HOST[:PORT], [IPV6][:PORT]. Text only: nothing is resolved
// and no part is validated beyond its shape (callers check schemes, ports and host names by
// their own rules). The parts view the input.
#pragma once

#include <string>
#include <string_view>

#include "tunnelkit/result.hpp"

namespace tunnelkit::net {

struct Authority {
  std::string_view host;  // without the brackets of an IPv6 literal; may be empty (":8080")
  std::string_view port;  // the text after the colon; empty when there is none
  bool has_port = false;  // a colon was there (its port may still be empty: "host:")
};

// HOST[:PORT] or [IPV6][:PORT]. Fails on a '[' without ']', text after ']' that is not ":PORT",
// or an IPv6 address without brackets (a second ':').
Result<Authority> SplitAuthority(std::string_view text);

struct UrlParts {
  std::string_view scheme;     // as written, without "://"
  std::string_view authority;  // up to the first '/', '?' or '#'
  std::string_view target;     // the rest ("/path?q", "?q"); empty when there is none
};

// scheme://AUTHORITY[TARGET]. Fails when there is no "://" or the scheme is empty.
Result<UrlParts> SplitUrl(std::string_view text);

// HOST:PORT, with brackets around an IPv6 address (a host with a ':'): SplitAuthority's inverse.
std::string JoinHostPort(std::string_view host, unsigned port);

// An Asio endpoint (TCP or UDP) as JoinHostPort writes it: "127.0.0.1:80", "[::1]:80".
template <typename Endpoint>
std::string EndpointText(const Endpoint& endpoint) {
  return JoinHostPort(endpoint.address().to_string(), endpoint.port());
}

}  // namespace tunnelkit::net
