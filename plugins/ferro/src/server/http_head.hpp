// The head of a public HTTP/1.1 request, as far as the server needs it: routing by Host,
// /health, WebSocket detection, and the head re-serialised for the tunnel stream. Pure code.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tunnelkit::ferro {

inline constexpr std::size_t kMaxRequestHead = 64 * 1024;
inline constexpr std::size_t kMaxRequestHeaders = 128;
// What SerializeRequestHead may add to a parsed head: an X-Forwarded-For and a "Connection:
// close" line (with the client address, about 110 bytes), and the space after each colon
// ("a:b" goes out as "a: b", a byte per line).
inline constexpr std::size_t kAddedHeaderLines = 2;
inline constexpr std::size_t kAddedHeadBytes = 256;
// Longest client address SerializeRequestHead takes (an IPv6 address is at most 45).
inline constexpr std::size_t kMaxClientAddress = 64;

// How a request's body is delimited (RFC 9112 section 6.3).
struct BodyFraming {
  enum class Kind {
    kNone,     // no body
    kLength,   // Content-Length bytes
    kChunked,  // Transfer-Encoding ending in chunked
    kInvalid,  // cannot be told: refused (400), as request smuggling would use it
  };
  Kind kind = Kind::kNone;
  long long length = 0;
};

struct RequestHead {
  std::string method;
  std::string target;
  std::string version;  // "HTTP/1.1"
  std::vector<std::pair<std::string, std::string>> headers;

  // First value of a header (case-insensitive name), or empty.
  std::string Header(std::string_view name) const;
  // True when a comma-separated header holds `token` (case-insensitive).
  bool HeaderHasToken(std::string_view name, std::string_view token) const;
  bool IsWebSocketUpgrade() const;
  std::string Path() const;  // target without the query
  // True when the public connection may carry another request after this one: HTTP/1.1, no
  // "Connection: close", no Upgrade, not CONNECT, and no body (such a request goes through
  // the stream as one exchange and the public connection closes after the response).
  bool CanKeepAlive() const;
  // kInvalid for a Transfer-Encoding that does not end in chunked, Content-Length together
  // with Transfer-Encoding, or a malformed or conflicting Content-Length.
  BodyFraming Body() const;
};

// The head of a response read back from a tunnel stream.
struct ResponseHead {
  std::string version;  // "HTTP/1.1"
  int status = 0;
  std::string status_line;  // "HTTP/1.1 200 OK"
  std::vector<std::pair<std::string, std::string>> headers;

  // True when the body's end is known without the stream ending (Content-Length, chunked, or
  // no body at all): the public connection can then be kept open after it.
  bool IsSelfDelimited(std::string_view request_method) const;
  // The body's length when it is given by Content-Length (or is empty); nullopt otherwise.
  std::optional<long long> BodyLength(std::string_view request_method) const;
};

// Parses a complete response head (as delimited by FindHeadEnd).
std::optional<ResponseHead> ParseResponseHead(std::string_view head, std::string& error);

// The response head for a public connection that stays open: the hop-by-hop connection
// headers (the stream's "Connection: close") are dropped.
std::string SerializeKeptAliveResponseHead(const ResponseHead& head);

// Where the head ends ("\r\n\r\n" included) in `data`, or 0 when it is not complete yet.
std::size_t FindHeadEnd(std::string_view data);

// Parses a complete head (as delimited by FindHeadEnd): at most kMaxRequestHeaders header
// lines and kMaxRequestHead bytes. nullopt with `error` when malformed, too large, or when it
// repeats Host (which one would the origin route by?).
std::optional<RequestHead> ParseRequestHead(std::string_view head, std::string& error);
// The public ingress's parse: ParseRequestHead with room left for what SerializeRequestHead
// adds (kAddedHeaderLines lines, kAddedHeadBytes bytes), so that what the server forwards,
// the next parser accepts: ParseRequestHead(SerializeRequestHead(*ParseIncomingRequestHead(x)))
// succeeds whenever ParseIncomingRequestHead(x) does.
std::optional<RequestHead> ParseIncomingRequestHead(std::string_view head, std::string& error);

// Host header value for routing: trimmed, port and IPv6 brackets removed, lower-case,
// trailing dot removed.
std::string NormalizeHost(std::string_view host);

// The head as sent through the tunnel. `close_after`: the hop-by-hop connection headers are
// replaced by "Connection: close" so that the stream carries exactly one exchange.
// `client_address` (at most kMaxClientAddress bytes; longer is left out) is appended to
// X-Forwarded-For.
std::string SerializeRequestHead(const RequestHead& head, bool close_after,
                                 std::string_view client_address);

}  // namespace tunnelkit::ferro
