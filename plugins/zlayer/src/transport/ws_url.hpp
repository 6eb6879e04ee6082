// ws:// and wss:// URLs as the agent's --server flag takes them.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace tunnelkit::zlayer::transport {

struct WsUrl {
  bool tls = false;
  std::string host;  // without brackets for IPv6 literals
  int port = 0;
  std::string path = "/";

  std::string ToString() const;
  // Returns nullopt and sets `error` when the URL is not ws[s]://HOST[:PORT][/PATH].
  static std::optional<WsUrl> Parse(std::string_view text, std::string& error);
};

// "HOST:PORT" / "[V6]:PORT" / ":PORT" (all interfaces).
struct HostPort {
  std::string host;
  int port = 0;
  static std::optional<HostPort> Parse(std::string_view text, std::string& error);
};

}  // namespace tunnelkit::zlayer::transport
