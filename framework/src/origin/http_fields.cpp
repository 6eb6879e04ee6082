#include "tunnelkit/origin/http_fields.hpp"

#include <cctype>
#include <charconv>
#include <vector>

#include <fmt/format.h>

#include <boost/beast/core/string.hpp>
#include "tunnelkit/net/url.hpp"

namespace tunnelkit::origin {

namespace beast = boost::beast;
namespace http = boost::beast::http;

void RemoveHopByHop(http::fields& fields, bool keep_upgrade) {
  // Names listed in Connection are hop-by-hop too.
  std::vector<std::string> listed;
  for (auto it = fields.find(http::field::connection);
       it != fields.end() && it->name() == http::field::connection; ++it) {
    std::string value(View(it->value()));
    std::size_t start = 0;
    while (start < value.size()) {
      auto comma = value.find(',', start);
      std::string token =
          value.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      start = comma == std::string::npos ? value.size() : comma + 1;
      auto b = token.find_first_not_of(" \t");
      auto e = token.find_last_not_of(" \t");
      if (b != std::string::npos) listed.push_back(token.substr(b, e - b + 1));
    }
  }
  for (const auto& name : listed) {
    if (keep_upgrade && beast::iequals(name, "upgrade")) continue;
    fields.erase(BView(name));
  }
  for (auto f : {http::field::connection, http::field::keep_alive, http::field::proxy_connection,
                 http::field::te, http::field::trailer, http::field::transfer_encoding,
                 http::field::proxy_authorization}) {
    fields.erase(f);
  }
  if (!keep_upgrade) fields.erase(http::field::upgrade);
}

bool IsUpgrade(const http::fields& fields) {
  if (fields.find(http::field::upgrade) == fields.end()) return false;
  std::string connection(View(fields[http::field::connection]));
  for (auto& c : connection) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return connection.find("upgrade") != std::string::npos;
}

void AppendField(http::fields& fields, beast::string_view name, const std::string& value) {
  if (value.empty()) return;
  auto existing = fields[name];
  if (existing.empty()) {
    fields.set(name, value);
  } else {
    fields.set(name, std::string(View(existing)) + ", " + value);
  }
}

std::optional<std::uint64_t> ContentLengthOf(const http::fields& fields) {
  auto it = fields.find(http::field::content_length);
  if (it == fields.end()) return std::nullopt;
  auto v = View(it->value());
  std::uint64_t n = 0;
  auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || ptr != v.data() + v.size()) return std::nullopt;
  return n;
}

void RewriteRequest(http::request_header<>& req, const Rule& rule, const ClientInfo& client) {
  bool upgrade = IsUpgrade(req);
  RemoveHopByHop(req, upgrade);
  req.erase(http::field::content_length);
  req.erase(http::field::expect);  // answered by the proxy itself
  if (upgrade) req.set(http::field::connection, "Upgrade");
  AppendField(req, "X-Forwarded-For", client.address);
  AppendField(req, "X-Forwarded-Proto", client.scheme);
  if (!rule.options.http_host_header.empty()) {
    req.set(http::field::host, rule.options.http_host_header);
  }
  req.version(11);
}

std::string PoolKey(const Rule& rule) {
  const Service& s = rule.service;
  switch (s.kind) {
    case Service::Kind::kHttps:
      return fmt::format("https://{}:{}|{}|{}|{}", s.host, s.port, rule.options.ca_pool,
                         rule.options.no_tls_verify, rule.options.http_host_header);
    case Service::Kind::kUnix:
      return "unix:" + s.path;
    case Service::Kind::kHelloWorld:
      return "hello_world";
    default:
      return fmt::format("tcp://{}:{}", s.host, s.port);
  }
}

std::string_view PathOf(std::string_view target) {
  if (target.empty() || target.front() == '/') return target;
  const auto url = net::SplitUrl(target);
  if (!url) return target;
  return url->target.starts_with('/') ? url->target : std::string_view("/");
}

}  // namespace tunnelkit::origin
