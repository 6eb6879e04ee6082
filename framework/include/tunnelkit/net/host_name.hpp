// The shape of a DNS host name (letters, digits, '-', labels of 1 to 63 characters, 253 in all).
// Callers differ on two points, so each states its rule: '_' (service labels, seen in real
// configurations; Cloudflare's API never issues one) and a trailing dot (the absolute form
// "example.com.", which resolvers accept and an issued hostname never has).
#pragma once

#include <string_view>

#include "tunnelkit/result.hpp"

namespace tunnelkit::net {

struct HostNameRules {
  bool allow_underscore = false;
  bool allow_trailing_dot = false;
};

// Success when `host` has the shape; else an Invalid error saying what is wrong.
Result<void> CheckHostName(std::string_view host, HostNameRules rules = {});

}  // namespace tunnelkit::net
