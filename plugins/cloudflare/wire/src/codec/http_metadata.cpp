#include "tunnelkit/cloudflare/wire/codec/http_metadata.hpp"

#include <cstdlib>

#include "tunnelkit/net/url.hpp"

namespace tunnelkit::cloudflare {

namespace {

bool IsTokenChar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  static constexpr std::string_view kExtra = "!#$%&'*+-.^_`|~";
  return kExtra.find(c) != std::string_view::npos;
}

bool IsToken(std::string_view text) {
  if (text.empty()) return false;
  for (char c : text) {
    if (!IsTokenChar(c)) return false;
  }
  return true;
}

bool IsFieldValue(std::string_view text) {
  return text.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}

// Peer text quoted in an error: at most 64 bytes, control bytes as '?', so that the reason
// stays one line in a log whatever the peer sent.
std::string Quote(std::string_view text) {
  std::string out(text.substr(0, 64));
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  return out;
}

void AppendHeaders(const HttpHeaderList& headers, std::vector<MetadataEntry>& out) {
  for (const auto& [name, value] : headers) {
    out.push_back({std::string(kMetaHttpHeaderPrefix) + name, value});
  }
}

// Takes the HttpHeader:<Name> entries; returns an error line or "".
std::string TakeHeader(const MetadataEntry& entry, HttpHeaderList& headers) {
  std::string_view name = std::string_view(entry.key).substr(kMetaHttpHeaderPrefix.size());
  if (name.find(':') != std::string_view::npos) {
    return "metadata key " + Quote(entry.key) + " has more than one ':'";
  }
  if (!IsToken(name)) return "metadata key " + Quote(entry.key) + " is not a valid header name";
  if (!IsFieldValue(entry.val)) return "metadata " + Quote(entry.key) + " holds CR, LF or NUL";
  headers.emplace_back(std::string(name), entry.val);
  return {};
}

bool IsHeaderKey(const std::string& key) {
  return key.starts_with(kMetaHttpHeaderPrefix);
}

}  // namespace

std::vector<MetadataEntry> EncodeRequestMetadata(const HttpRequestMeta& request) {
  std::vector<MetadataEntry> out;
  out.reserve(request.headers.size() + 2);
  out.push_back({std::string(kMetaHttpMethod), request.method});
  out.push_back({std::string(kMetaHttpHost), request.host});
  AppendHeaders(request.headers, out);
  return out;
}

std::vector<MetadataEntry> EncodeResponseMetadata(const HttpResponseMeta& response) {
  std::vector<MetadataEntry> out;
  out.reserve(response.headers.size() + 1);
  out.push_back({std::string(kMetaHttpStatus), std::to_string(response.status)});
  AppendHeaders(response.headers, out);
  return out;
}

std::string DecodeRequestMetadata(const std::vector<MetadataEntry>& metadata,
                                  HttpRequestMeta& out) {
  out = {};
  bool have_method = false;
  for (const auto& entry : metadata) {
    if (entry.key == kMetaHttpMethod) {
      if (!IsToken(entry.val)) return "metadata HttpMethod is not a valid method";
      out.method = entry.val;
      have_method = true;
    } else if (entry.key == kMetaHttpHost) {
      if (!IsFieldValue(entry.val) || entry.val.find_first_of(" \t/") != std::string::npos)
        return "metadata HttpHost is not a valid host";
      out.host = entry.val;
    } else if (IsHeaderKey(entry.key)) {
      if (auto error = TakeHeader(entry, out.headers); !error.empty()) return error;
    }
  }
  if (!have_method) return "metadata has no HttpMethod";
  return {};
}

std::string DecodeResponseMetadata(const std::vector<MetadataEntry>& metadata,
                                   HttpResponseMeta& out) {
  out = {};
  bool have_status = false;
  for (const auto& entry : metadata) {
    if (entry.key == kMetaHttpStatus) {
      const std::string& v = entry.val;
      if (v.size() != 3 || v.find_first_not_of("0123456789") != std::string::npos || v[0] == '0')
        return "metadata HttpStatus \"" + Quote(v.substr(0, 16)) + "\" is not a 3-digit status";
      out.status = std::atoi(v.c_str());
      have_status = true;
    } else if (IsHeaderKey(entry.key)) {
      if (auto error = TakeHeader(entry, out.headers); !error.empty()) return error;
    }
  }
  if (!have_status) return "metadata has no HttpStatus";
  return {};
}

std::string TargetFromDest(const std::string& dest) {
  std::string_view rest = dest;
  if (const auto url = net::SplitUrl(dest)) rest = url->target;
  if (rest.empty() || rest.front() == '#') return "/";
  if (rest.front() == '?') return "/" + std::string(rest);
  return std::string(rest);
}

std::string HostFromDest(const std::string& dest) {
  const auto url = net::SplitUrl(dest);
  std::string_view authority = url ? url->authority : std::string_view(dest);
  authority = authority.substr(0, authority.find_first_of("/?#"));
  const auto parts = net::SplitAuthority(authority);
  return parts ? std::string(parts->host) : std::string(authority);
}

}  // namespace tunnelkit::cloudflare
