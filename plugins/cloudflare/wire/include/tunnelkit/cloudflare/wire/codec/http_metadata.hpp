// HTTP heads as ConnectRequest / ConnectResponse metadata (specs/cloudflare.md 5.3 and 5.4):
// HttpMethod, HttpHost, one HttpHeader:<Name> entry per header value, HttpStatus on responses.
// Both sides use it: the client turns an edge's request into an origin request and the origin's
// response back into metadata; cfedge does the reverse for visitors. Pure.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "tunnelkit/cloudflare/wire/codec/connect_metadata.hpp"

namespace tunnelkit::cloudflare {

using HttpHeaderList = std::vector<std::pair<std::string, std::string>>;

inline constexpr std::string_view kMetaHttpMethod = "HttpMethod";
inline constexpr std::string_view kMetaHttpHost = "HttpHost";
inline constexpr std::string_view kMetaHttpStatus = "HttpStatus";
inline constexpr std::string_view kMetaHttpHeaderPrefix = "HttpHeader:";

struct HttpRequestMeta {
  std::string method;
  std::string host;
  HttpHeaderList headers;  // in arrival order; repeated names are repeated entries
};

struct HttpResponseMeta {
  int status = 0;
  HttpHeaderList headers;
};

std::vector<MetadataEntry> EncodeRequestMetadata(const HttpRequestMeta& request);
std::vector<MetadataEntry> EncodeResponseMetadata(const HttpResponseMeta& response);

// Both return an empty string on success, else one line naming the bad entry. Unknown keys
// (cf-trace-id, FlowID, ...) are ignored. A header name must be a token (RFC 9110) and a value
// must not hold CR, LF or NUL: metadata must never smuggle extra header lines to an origin.
std::string DecodeRequestMetadata(const std::vector<MetadataEntry>& metadata, HttpRequestMeta& out);
std::string DecodeResponseMetadata(const std::vector<MetadataEntry>& metadata,
                                   HttpResponseMeta& out);

// The path and query of a ConnectRequest dest ("https://host/p?q" -> "/p?q"; "" -> "/").
std::string TargetFromDest(const std::string& dest);
// The host of a dest URL or "host:port" ("https://a.b:8443/x" -> "a.b").
std::string HostFromDest(const std::string& dest);

}  // namespace tunnelkit::cloudflare
