// fuzz-links: tunnelkit_ferro_core
// fuzz-sources: plugins/ferro/src/server/http_head.cpp
// The ferro server's HTTP/1.1 head parser (public requests, and responses read back from a
// tunnel stream). Round trips: a parsed request head serialises to bytes that parse to the same
// head; the head sent through the tunnel (Connection: close, X-Forwarded-For) parses too, with
// exactly the header changes the serialiser promises; a kept-alive response head parses to the
// same status and headers minus the connection headers.
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "server/http_head.hpp"

using namespace tunnelkit::ferro;

namespace {

using Headers = std::vector<std::pair<std::string, std::string>>;

std::string Lower(std::string_view text) {
  std::string out(text);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool IsConnectionHeader(std::string_view key) {
  const std::string name = Lower(key);
  return name == "connection" || name == "keep-alive" || name == "proxy-connection";
}

void CheckRequest(std::string_view bytes) {
  const std::size_t end = FindHeadEnd(bytes);
  if (end == 0) return;
  if (end < 4 || end > bytes.size() || bytes.substr(end - 4, 4) != "\r\n\r\n") std::abort();
  std::string error;
  const auto head = ParseIncomingRequestHead(bytes.substr(0, end), error);
  if (!head) {
    if (error.empty()) std::abort();
    return;
  }
  if (head->headers.size() > kMaxRequestHeaders) std::abort();
  // What the server asks of a head (routing, keep-alive, upgrade): must not crash.
  (void)NormalizeHost(head->Header("host"));
  (void)head->Path();
  (void)head->CanKeepAlive();
  (void)head->IsWebSocketUpgrade();

  // 1. Unchanged: the same head again.
  const std::string plain = SerializeRequestHead(*head, false, "");
  const auto again = ParseRequestHead(plain, error);
  if (!again || again->method != head->method || again->target != head->target ||
      again->version != head->version || again->headers != head->headers) {
    std::abort();
  }

  // 2. Through the tunnel: connection headers replaced by one "Connection: close", every
  //    X-Forwarded-For folded into one that ends with the client's address.
  const std::string client = "192.0.2.7";
  const std::string tunneled = SerializeRequestHead(*head, true, client);
  const auto received = ParseRequestHead(tunneled, error);
  if (!received) std::abort();  // the server must never send what it refuses itself
  Headers expected;
  std::string forwarded;
  bool forwarded_seen = false;
  for (const auto& [key, value] : head->headers) {
    if (IsConnectionHeader(key)) continue;
    if (Lower(key) == "x-forwarded-for") {
      if (!forwarded_seen) forwarded = value;
      forwarded_seen = true;
      continue;
    }
    expected.emplace_back(key, value);
  }
  expected.emplace_back("X-Forwarded-For", forwarded.empty() ? client : forwarded + ", " + client);
  expected.emplace_back("Connection", "close");
  if (received->method != head->method || received->target != head->target ||
      received->headers != expected) {
    std::abort();
  }
}

void CheckResponse(std::string_view bytes) {
  const std::size_t end = FindHeadEnd(bytes);
  if (end == 0) return;
  std::string error;
  const auto head = ParseResponseHead(bytes.substr(0, end), error);
  if (!head) {
    if (error.empty()) std::abort();
    return;
  }
  if (head->status < 0 || head->status > 999) std::abort();
  for (const char* method : {"GET", "HEAD"}) {
    const bool self_delimited = head->IsSelfDelimited(method);
    const auto length = head->BodyLength(method);
    if (length && *length < 0) std::abort();
    (void)self_delimited;
  }
  const std::string kept = SerializeKeptAliveResponseHead(*head);
  const auto again = ParseResponseHead(kept, error);
  if (!again || again->status != head->status || again->status_line != head->status_line) {
    std::abort();
  }
  Headers expected;
  for (const auto& field : head->headers) {
    if (!IsConnectionHeader(field.first)) expected.push_back(field);
  }
  if (again->headers != expected) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  CheckRequest(bytes);
  CheckResponse(bytes);
  return 0;
}
