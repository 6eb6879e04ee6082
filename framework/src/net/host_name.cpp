#include "tunnelkit/net/host_name.hpp"

#include <string>

namespace tunnelkit::net {

namespace {

bool IsAsciiAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

}  // namespace

Result<void> CheckHostName(std::string_view host, HostNameRules rules) {
  if (host.empty()) return Error::Invalid("empty host name");
  if (host.size() > 253) return Error::Invalid("host name longer than 253 characters");
  if (host.back() == '.' && !rules.allow_trailing_dot) {
    return Error::Invalid("host name ends with '.'");
  }
  std::size_t label = 0;
  for (char c : host) {
    if (c == '.') {
      if (label == 0) return Error::Invalid("empty label in host name");
      label = 0;
      continue;
    }
    if (!IsAsciiAlnum(c) && c != '-' && !(c == '_' && rules.allow_underscore)) {
      return Error::Invalid(std::string("character '") + c + "' in host name");
    }
    if (++label > 63) return Error::Invalid("host name label longer than 63 characters");
  }
  return {};
}

}  // namespace tunnelkit::net
