// The HTTP/1.1 header work of the origin proxy: hop-by-hop fields, upgrades, the request head
// sent to an origin, and the key of an origin's connection pool.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/message.hpp>

#include "tunnelkit/origin/origin_proxy.hpp"
#include "tunnelkit/origin/router.hpp"

namespace tunnelkit::origin {

// Beast's string_view and the standard one, both ways (same bytes, no copy).
inline std::string_view View(boost::beast::string_view s) {
  return {s.data(), s.size()};
}
inline boost::beast::string_view BView(std::string_view s) {
  return {s.data(), s.size()};
}

// Removes the fields that describe one hop (those named in Connection too); Upgrade and a
// Connection naming it stay when `keep_upgrade`.
void RemoveHopByHop(boost::beast::http::fields& fields, bool keep_upgrade);
// Upgrade present and Connection naming it.
bool IsUpgrade(const boost::beast::http::fields& fields);
// Appends `value` to a list field ("a, b"); nothing when `value` is empty.
void AppendField(boost::beast::http::fields& fields, boost::beast::string_view name,
                 const std::string& value);
// The Content-Length field as a number; nullopt when absent or not a plain decimal.
std::optional<std::uint64_t> ContentLengthOf(const boost::beast::http::fields& fields);
// Prepares the request head sent to the origin: hop-by-hop fields out, X-Forwarded-For and
// -Proto appended, the rule's Host, HTTP/1.1.
void RewriteRequest(boost::beast::http::request_header<>& req, const Rule& rule,
                    const ClientInfo& client);
// Origin connections are pooled per key: the rule's service and the options that change what a
// connection is (TLS verification, CA, Host).
std::string PoolKey(const Rule& rule);
// The path of a request target: absolute-form targets ("http://host/path") are reduced to it.
std::string_view PathOf(std::string_view target);

}  // namespace tunnelkit::origin
