#include "server/http_head.hpp"

#include <algorithm>
#include <cctype>

namespace tunnelkit::ferro {

namespace {

std::string Lower(std::string_view text) {
  std::string out(text);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view Trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

bool IsTokenChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](char x, char y) {
    return std::tolower(static_cast<unsigned char>(x)) ==
           std::tolower(static_cast<unsigned char>(y));
  });
}

// The header lines of a head from `pos` to the empty line, into `headers` (at most
// `max_headers`).
bool ParseHeaderLines(std::string_view head, std::size_t pos,
                      std::vector<std::pair<std::string, std::string>>& headers, std::string& error,
                      std::size_t max_headers = kMaxRequestHeaders) {
  headers.reserve(16);  // one allocation for a usual head, not one per doubling
  while (pos < head.size()) {
    const std::size_t line_end = head.find("\r\n", pos);
    if (line_end == std::string_view::npos) {
      error = "unterminated header line";
      return false;
    }
    if (line_end == pos) break;  // the empty line ending the head
    const std::string_view field = head.substr(pos, line_end - pos);
    const std::size_t colon = field.find(':');
    if (colon == std::string_view::npos || colon == 0 ||
        !std::all_of(field.begin(), field.begin() + static_cast<std::ptrdiff_t>(colon),
                     IsTokenChar)) {
      error = "malformed header line";
      return false;
    }
    if (headers.size() >= max_headers) {
      error = "too many headers";
      return false;
    }
    headers.emplace_back(std::string(field.substr(0, colon)),
                         std::string(Trim(field.substr(colon + 1))));
    pos = line_end + 2;
  }
  return true;
}

std::string FirstHeader(const std::vector<std::pair<std::string, std::string>>& headers,
                        std::string_view name) {
  for (const auto& [key, value] : headers) {
    if (EqualsIgnoreCase(key, name)) return value;
  }
  return {};
}

bool HasHeader(const std::vector<std::pair<std::string, std::string>>& headers,
               std::string_view name) {
  for (const auto& [key, value] : headers) {
    if (EqualsIgnoreCase(key, name)) return true;
  }
  return false;
}

// Content-Length as a number: nullopt when absent; -1 when malformed or repeated with
// different values.
std::optional<long long> ContentLength(
    const std::vector<std::pair<std::string, std::string>>& headers) {
  std::optional<long long> length;
  for (const auto& [key, value] : headers) {
    if (!EqualsIgnoreCase(key, "content-length")) continue;
    if (value.empty() || value.size() > 18 ||
        !std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return -1;
    }
    const long long n = std::stoll(value);
    if (length && *length != n) return -1;
    length = n;
  }
  return length;
}

bool IsConnectionHeader(std::string_view key) {
  return EqualsIgnoreCase(key, "connection") || EqualsIgnoreCase(key, "keep-alive") ||
         EqualsIgnoreCase(key, "proxy-connection");
}

// "key: value\r\n"
void AppendField(std::string& out, std::string_view key, std::string_view value) {
  out.append(key).append(": ").append(value).append("\r\n");
}

// The bytes of the header lines, as AppendField writes them.
std::size_t HeadSize(const std::vector<std::pair<std::string, std::string>>& headers) {
  std::size_t size = 0;
  for (const auto& [key, value] : headers) size += key.size() + value.size() + 4;
  return size;
}

}  // namespace

std::string RequestHead::Header(std::string_view name) const {
  return FirstHeader(headers, name);
}

bool RequestHead::HeaderHasToken(std::string_view name, std::string_view token) const {
  for (const auto& [key, value] : headers) {
    if (!EqualsIgnoreCase(key, name)) continue;
    std::string_view rest = value;
    while (!rest.empty()) {
      const std::size_t comma = rest.find(',');
      if (EqualsIgnoreCase(Trim(rest.substr(0, comma)), token)) return true;
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
  return false;
}

bool RequestHead::IsWebSocketUpgrade() const {
  return HeaderHasToken("upgrade", "websocket") && HeaderHasToken("connection", "upgrade");
}

std::string RequestHead::Path() const {
  return target.substr(0, target.find('?'));
}

std::size_t FindHeadEnd(std::string_view data) {
  const std::size_t end = data.find("\r\n\r\n");
  return end == std::string_view::npos ? 0 : end + 4;
}

namespace {

std::optional<RequestHead> ParseRequestHeadWithin(std::string_view head, std::size_t max_bytes,
                                                  std::size_t max_headers, std::string& error) {
  RequestHead out;
  std::size_t line_end = head.find("\r\n");
  if (line_end == std::string_view::npos) {
    error = "no request line";
    return std::nullopt;
  }
  const std::string_view line = head.substr(0, line_end);
  const std::size_t sp1 = line.find(' ');
  const std::size_t sp2 = line.rfind(' ');
  if (sp1 == std::string_view::npos || sp2 == sp1) {
    error = "malformed request line";
    return std::nullopt;
  }
  out.method = std::string(line.substr(0, sp1));
  out.target = std::string(line.substr(sp1 + 1, sp2 - sp1 - 1));
  out.version = std::string(line.substr(sp2 + 1));
  if (out.method.empty() || !std::all_of(out.method.begin(), out.method.end(), IsTokenChar) ||
      out.target.empty() || out.target.find(' ') != std::string::npos ||
      (out.version != "HTTP/1.1" && out.version != "HTTP/1.0")) {
    error = "malformed request line";
    return std::nullopt;
  }
  if (head.size() > max_bytes) {
    error = "request head too large";
    return std::nullopt;
  }
  if (!ParseHeaderLines(head, line_end + 2, out.headers, error, max_headers)) return std::nullopt;
  std::size_t hosts = 0;
  for (const auto& [key, value] : out.headers) hosts += EqualsIgnoreCase(key, "host") ? 1 : 0;
  if (hosts > 1) {
    error = "repeated Host header";
    return std::nullopt;
  }
  return out;
}

}  // namespace

std::optional<RequestHead> ParseRequestHead(std::string_view head, std::string& error) {
  return ParseRequestHeadWithin(head, kMaxRequestHead, kMaxRequestHeaders, error);
}

std::optional<RequestHead> ParseIncomingRequestHead(std::string_view head, std::string& error) {
  return ParseRequestHeadWithin(head, kMaxRequestHead - kAddedHeadBytes,
                                kMaxRequestHeaders - kAddedHeaderLines, error);
}

std::string NormalizeHost(std::string_view host) {
  host = Trim(host);
  if (!host.empty() && host.front() == '[') {
    const std::size_t close = host.find(']');
    host = close == std::string_view::npos ? host.substr(1) : host.substr(1, close - 1);
  } else if (const std::size_t colon = host.rfind(':');
             colon != std::string_view::npos && host.find(':') == colon) {
    host = host.substr(0, colon);
  }
  std::string out = Lower(host);
  if (!out.empty() && out.back() == '.') out.pop_back();
  return out;
}

std::string SerializeRequestHead(const RequestHead& head, bool close_after,
                                 std::string_view client_address) {
  if (client_address.size() > kMaxClientAddress) client_address = {};
  // Appended piece by piece into one reserved string: `a + b + c` makes a string per `+`.
  std::string out;
  out.reserve(HeadSize(head.headers) + head.method.size() + head.target.size() + 64 +
              2 * client_address.size());
  out.append(head.method).append(" ").append(head.target).append(" ").append(head.version);
  out.append("\r\n");
  std::string_view previous_forwarded;  // the first X-Forwarded-For's value
  bool forwarded_seen = false;
  for (const auto& [key, value] : head.headers) {
    if (close_after && IsConnectionHeader(key)) continue;
    if (EqualsIgnoreCase(key, "x-forwarded-for") && !client_address.empty()) {
      if (!forwarded_seen) previous_forwarded = value;
      forwarded_seen = true;
      continue;
    }
    AppendField(out, key, value);
  }
  if (!client_address.empty()) {
    out.append("X-Forwarded-For: ").append(previous_forwarded);
    if (!previous_forwarded.empty()) out.append(", ");
    out.append(client_address).append("\r\n");
  }
  if (close_after) out.append("Connection: close\r\n");
  out.append("\r\n");
  return out;
}

bool RequestHead::CanKeepAlive() const {
  if (version != "HTTP/1.1" || HeaderHasToken("connection", "close")) return false;
  // An upgrade (h2c, anything but the WebSocket path) or CONNECT may turn the connection into
  // a two-way byte stream: those keep the splice.
  if (HasHeader(headers, "upgrade") || method == "CONNECT") return false;
  if (HasHeader(headers, "transfer-encoding")) return false;
  const auto length = ContentLength(headers);
  return !length || *length == 0;
}

BodyFraming RequestHead::Body() const {
  const auto length = ContentLength(headers);
  if (HasHeader(headers, "transfer-encoding")) {
    if (length) return {BodyFraming::Kind::kInvalid};
    // Chunked must be the last coding (the only one a request may end with).
    std::string_view last;
    for (const auto& [key, value] : headers) {
      if (!EqualsIgnoreCase(key, "transfer-encoding")) continue;
      std::string_view rest = Trim(value);
      const std::size_t comma = rest.rfind(',');
      last = comma == std::string_view::npos ? rest : Trim(rest.substr(comma + 1));
    }
    if (!EqualsIgnoreCase(last, "chunked")) return {BodyFraming::Kind::kInvalid};
    return {BodyFraming::Kind::kChunked};
  }
  if (!length || *length == 0) return {BodyFraming::Kind::kNone};
  if (*length < 0) return {BodyFraming::Kind::kInvalid};
  return {BodyFraming::Kind::kLength, *length};
}

std::optional<ResponseHead> ParseResponseHead(std::string_view head, std::string& error) {
  ResponseHead out;
  const std::size_t line_end = head.find("\r\n");
  if (line_end == std::string_view::npos) {
    error = "no status line";
    return std::nullopt;
  }
  const std::string_view line = head.substr(0, line_end);
  // "HTTP/1.1 200 OK": the reason phrase may be empty or hold spaces.
  if (line.size() < 12 || (line.substr(0, 9) != "HTTP/1.1 " && line.substr(0, 9) != "HTTP/1.0 ") ||
      !std::all_of(line.begin() + 9, line.begin() + 12,
                   [](char c) { return c >= '0' && c <= '9'; }) ||
      (line.size() > 12 && line[12] != ' ')) {
    error = "malformed status line";
    return std::nullopt;
  }
  out.version = std::string(line.substr(0, 8));
  out.status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
  out.status_line = std::string(line);
  if (!ParseHeaderLines(head, line_end + 2, out.headers, error)) return std::nullopt;
  return out;
}

bool ResponseHead::IsSelfDelimited(std::string_view request_method) const {
  if (status < 200 || status == 101) return false;  // interim or upgrade: not one exchange
  if (status == 204 || status == 304 || request_method == "HEAD") return true;
  for (const auto& [key, value] : headers) {
    if (!EqualsIgnoreCase(key, "transfer-encoding")) continue;
    // Chunked must be the last coding for the body to end by itself.
    std::string_view rest = Trim(value);
    const std::size_t comma = rest.rfind(',');
    if (comma != std::string_view::npos) rest = Trim(rest.substr(comma + 1));
    return EqualsIgnoreCase(rest, "chunked");
  }
  const auto length = ContentLength(headers);
  return length && *length >= 0;
}

std::optional<long long> ResponseHead::BodyLength(std::string_view request_method) const {
  if (status == 204 || status == 304 || request_method == "HEAD") return 0;
  if (HasHeader(headers, "transfer-encoding")) return std::nullopt;
  const auto length = ContentLength(headers);
  if (!length || *length < 0) return std::nullopt;
  return length;
}

std::string SerializeKeptAliveResponseHead(const ResponseHead& head) {
  std::string out;
  out.reserve(head.status_line.size() + HeadSize(head.headers) + 4);
  out.append(head.status_line).append("\r\n");
  for (const auto& [key, value] : head.headers) {
    if (!IsConnectionHeader(key)) AppendField(out, key, value);
  }
  out.append("\r\n");
  return out;
}

}  // namespace tunnelkit::ferro
