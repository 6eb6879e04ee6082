// The quick-tunnel API call (specs/cloudflare.md section 1): POST <service>/tunnel with no body
// over HTTPS (system roots, or --api-ca) or plain HTTP when the URL says http://, and the
// retry policy the spec suggests: 5xx, network errors and non-JSON replies are retried after
// 1 s, 2 s, 4 s; 4xx and success:false are final. Every failure ends as one line of text.
#pragma once

#include <chrono>
#include <stdexcept>
#include <string>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include "tunnelkit/cloudflare/wire/api/quick_tunnel.hpp"

namespace tunnelkit::cloudflare {

struct QuickTunnelApiOptions {
  std::string service_url = "https://api.trycloudflare.com";
  std::string ca_file;                       // PEM roots for https; empty = system roots
  std::chrono::milliseconds timeout{15000};  // per attempt: connect, TLS, request and reply
  int retries = 3;
  std::chrono::milliseconds first_retry_delay{1000};  // doubles every retry
  std::string user_agent = "tunnelkit-cloudflare/" TUNNELKIT_VERSION_STRING;
};

class QuickTunnelApiError : public std::runtime_error {
 public:
  enum class Kind { kRateLimited, kUnreachable, kTls, kHttpStatus, kBadReply, kBadUrl };
  QuickTunnelApiError(Kind kind, const std::string& message)
      : std::runtime_error(message), kind_(kind) {}
  Kind kind() const { return kind_; }

 private:
  Kind kind_;
};

// Parsed service URL: http(s)://host[:port][/prefix].
struct ServiceUrl {
  bool tls = true;
  std::string host;
  std::string port;
  std::string path_prefix;  // no trailing slash
};
// Throws QuickTunnelApiError(kBadUrl).
ServiceUrl ParseServiceUrl(const std::string& url);

// Creates a quick tunnel. Throws QuickTunnelApiError.
boost::asio::awaitable<QuickTunnel> RequestQuickTunnel(boost::asio::any_io_executor executor,
                                                       QuickTunnelApiOptions options);

}  // namespace tunnelkit::cloudflare
