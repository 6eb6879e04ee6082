// The server's accepted tokens: SHA-256 hashes (lowercase hex), each with an optional expiry,
// as ZLayer's daemon stores them. Tokens themselves are never stored or logged.
//
// File format, one token per line, '#' starts a comment:
//   <64 hex digits>                        never expires
//   <64 hex digits> <unix seconds>         expires then
//   <64 hex digits> <YYYY-MM-DDTHH:MM:SSZ> expires then
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tunnelkit::zlayer {

// SHA-256 of the raw token as lowercase hex (upstream's hash_token).
std::string HashToken(std::string_view token);

class TokenStore {
 public:
  struct Entry {
    std::string hash;                        // 64 lowercase hex digits
    std::optional<std::int64_t> expires_at;  // Unix seconds
  };
  struct Verdict {
    bool ok = false;
    std::string hash;    // of the presented token (set when ok)
    std::string reason;  // upstream's wording when !ok
  };

  // Parses the file; false with "FILE:LINE: why" in `error`.
  bool LoadFile(const std::string& path, std::string& error);
  bool LoadText(std::string_view text, const std::string& origin, std::string& error);
  void Add(Entry entry) { entries_.push_back(std::move(entry)); }
  std::size_t size() const { return entries_.size(); }

  // Compares the token's hash with every stored hash in constant time (CRYPTO_memcmp, no early
  // exit), then checks expiry against `now` (Unix seconds).
  Verdict Check(std::string_view token, std::int64_t now) const;

 private:
  std::vector<Entry> entries_;
};

}  // namespace tunnelkit::zlayer
