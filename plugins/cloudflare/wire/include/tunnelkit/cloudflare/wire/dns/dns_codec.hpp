// DnsCodec: DNS queries and responses (RFC 1035, SRV per RFC 2782) as pure functions over bytes.
// Only what edge discovery needs: one-question queries for SRV, A and AAAA, and the answer
// section of responses. Every length, count and compression pointer is bounded.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "tunnelkit/result.hpp"

namespace tunnelkit::cloudflare::dns {

enum class RecordType : std::uint16_t { kA = 1, kAaaa = 28, kSrv = 33 };

inline constexpr std::size_t kMaxMessageSize = 65535;
inline constexpr std::size_t kMaxLabelLength = 63;
inline constexpr std::size_t kMaxNameLength = 255;  // wire form, as RFC 1035 counts it
inline constexpr std::size_t kMaxQuestions = 4;
inline constexpr std::size_t kMaxRecordsPerSection = 512;
inline constexpr int kMaxPointerHops = 32;

struct SrvRecord {
  std::uint16_t priority = 0;
  std::uint16_t weight = 0;
  std::uint16_t port = 0;
  std::string target;  // without the trailing dot
  bool operator==(const SrvRecord&) const = default;
};

struct Response {
  std::uint16_t id = 0;
  std::uint8_t rcode = 0;
  bool truncated = false;  // TC bit
  std::vector<SrvRecord> srv;
  std::vector<std::array<std::uint8_t, 4>> a;
  std::vector<std::array<std::uint8_t, 16>> aaaa;
};

// A name read from a message: its dotted text and the offset after it in place.
struct Name {
  std::string text;
  std::size_t next = 0;
};

// A recursive (RD) query for `name` (dotted, optional trailing dot). Throws
// std::invalid_argument when the name breaks the label/name limits.
std::vector<std::uint8_t> EncodeQuery(std::uint16_t id, const std::string& name, RecordType type);

// Decodes a response. Fails when the message is malformed or over a limit, is not a response
// (QR clear), carries another id than `expected_id`, or has a non-zero rcode. Answer records
// of other types (e.g. CNAME) are skipped; authority and additional sections are ignored.
// Error kinds: kTooLarge for a limit, kNotFound for a non-zero rcode, kInvalid otherwise.
Result<Response> DecodeResponse(std::span<const std::uint8_t> message, std::uint16_t expected_id);

// Reads a possibly compressed name at `offset`. Exposed for tests.
Result<Name> ReadName(std::span<const std::uint8_t> message, std::size_t offset);

std::string RcodeName(std::uint8_t rcode);

}  // namespace tunnelkit::cloudflare::dns
