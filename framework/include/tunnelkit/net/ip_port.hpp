// IP endpoints written as text in flags and configuration (resolvers, listen addresses).
#pragma once

#include <string>

#include <boost/asio/ip/tcp.hpp>

#include "tunnelkit/result.hpp"

namespace tunnelkit::net {

// "IP:PORT" or "[IPV6]:PORT" (an IP literal, no host name: resolvers must not need resolving).
Result<boost::asio::ip::tcp::endpoint> ParseIpPort(const std::string& text,
                                                   bool allow_port_zero = false);

}  // namespace tunnelkit::net
