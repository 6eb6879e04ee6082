// The client's answer to RPC streams the edge opens (specs/cloudflare.md section 6): after the
// 6-byte RPC signature, two-party Cap'n Proto with the client as the server, bootstrap
// CloudflaredServer (SessionManager + ConfigurationManager). A quick tunnel proxies no UDP and is
// not remotely managed, so calls get well-formed refusals rather than a broken stream:
// registerUdpSession answers err, unregisterUdpSession succeeds (nothing to end),
// updateConfiguration answers err with latestAppliedVersion -1. The RPC connection lives at
// most `limit` (cloudflared's --rpc-timeout, 5 s).
#pragma once

#include <chrono>
#include <memory>

#include <boost/asio/awaitable.hpp>

#include "tunnelkit/cloudflare/wire/kjasio/asio_kj_loop.hpp"
#include "tunnelkit/stream.hpp"

namespace spdlog {
class logger;
}

namespace tunnelkit::cloudflare {

inline constexpr const char* kUdpRefusal = "UDP sessions are not supported by this quick tunnel";
inline constexpr const char* kConfigRefusal =
    "this quick tunnel is configured locally, not remotely managed";

// Serves until the edge ends the stream or `limit` passes; never throws.
boost::asio::awaitable<void> ServeCloudflaredRpc(AsioKjLoop& loop, std::shared_ptr<Stream> stream,
                                                 std::chrono::milliseconds limit,
                                                 std::shared_ptr<spdlog::logger> logger);

}  // namespace tunnelkit::cloudflare
