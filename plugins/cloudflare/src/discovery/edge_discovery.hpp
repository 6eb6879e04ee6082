// EdgeDiscovery: finds the Cloudflare edge addresses as cloudflared does (SRV
// _v2-origintunneld._tcp.argotunnel.com, at least two records = two regions, each target
// resolved to its addresses, port from the record). Queries go to the system resolver over
// UDP; when that fails, to DNS-over-TLS (1.1.1.1:853, SNI cloudflare-dns.com, 15 s).
// Everything the tests need to point it at loopback servers is injectable.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>

namespace tunnelkit::cloudflare {

struct EdgeDiscoveryOptions {
  std::string srv_name = "_v2-origintunneld._tcp.argotunnel.com";
  // UDP resolvers; empty = the `nameserver` lines of `resolv_conf` (port 53).
  std::vector<boost::asio::ip::udp::endpoint> resolvers;
  std::string resolv_conf = "/etc/resolv.conf";
  std::chrono::milliseconds udp_timeout{5000};
  // DNS-over-TLS fallback; dot_enabled = false turns it off.
  bool dot_enabled = true;
  boost::asio::ip::tcp::endpoint dot_server{boost::asio::ip::make_address("1.1.1.1"), 853};
  std::string dot_server_name = "cloudflare-dns.com";
  std::string dot_ca_file;  // PEM roots; empty = the system roots
  std::chrono::milliseconds dot_timeout{15000};
};

struct EdgeRegions {
  std::vector<boost::asio::ip::udp::endpoint> region1;
  std::vector<boost::asio::ip::udp::endpoint> region2;
};

// Parses resolv.conf text: every `nameserver ADDR` line (IPv4 or IPv6, scope ids dropped) as
// ADDR:53. Other lines and bad addresses are ignored.
std::vector<boost::asio::ip::udp::endpoint> ParseResolvConf(const std::string& text);

// Runs discovery. Throws std::runtime_error with a one-line reason (e.g. "expected at least 2
// Cloudflare regions, got 1 SRV record for ...", or why both UDP and DoT failed).
boost::asio::awaitable<EdgeRegions> DiscoverEdges(boost::asio::any_io_executor executor,
                                                  EdgeDiscoveryOptions options);

}  // namespace tunnelkit::cloudflare
