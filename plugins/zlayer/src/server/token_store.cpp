#include "server/token_store.hpp"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <charconv>
#include <ctime>
#include <fstream>
#include <iomanip>
#include <sstream>

#include "tunnelkit/hex.hpp"

namespace tunnelkit::zlayer {

namespace {

bool IsHex64(std::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
      return false;
    }
  }
  return true;
}

std::optional<std::int64_t> ParseExpiry(std::string_view text) {
  std::int64_t seconds = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), seconds);
  if (ec == std::errc() && end == text.data() + text.size()) return seconds;
  // YYYY-MM-DDTHH:MM:SSZ
  std::tm tm{};
  const std::string copy(text);
  std::istringstream in(copy);
  in >> std::get_time(&tm, "%Y-%m-%dT%H:%M:%SZ");
  if (in.fail() || in.peek() != std::char_traits<char>::eof()) return std::nullopt;
  return static_cast<std::int64_t>(timegm(&tm));
}

}  // namespace

std::string HashToken(std::string_view token) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), digest);
  return hex::Encode(digest);
}

bool TokenStore::LoadFile(const std::string& path, std::string& error) {
  std::ifstream in(path);
  if (!in) {
    error = path + ": cannot read the token file";
    return false;
  }
  std::stringstream text;
  text << in.rdbuf();
  return LoadText(text.str(), path, error);
}

bool TokenStore::LoadText(std::string_view text, const std::string& origin, std::string& error) {
  std::size_t line_number = 0;
  while (!text.empty()) {
    ++line_number;
    const auto newline = text.find('\n');
    std::string_view line = text.substr(0, newline);
    text = newline == std::string_view::npos ? std::string_view{} : text.substr(newline + 1);
    if (const auto hash = line.find('#'); hash != std::string_view::npos)
      line = line.substr(0, hash);
    std::istringstream fields{std::string(line)};
    std::string digest;
    std::string expiry;
    std::string extra;
    if (!(fields >> digest)) continue;  // blank or comment
    fields >> expiry >> extra;
    const std::string where = origin + ":" + std::to_string(line_number) + ": ";
    if (!IsHex64(digest)) {
      error = where + "expected a SHA-256 hash as 64 hex digits";
      return false;
    }
    if (!extra.empty()) {
      error = where + "unexpected text after the expiry";
      return false;
    }
    Entry entry;
    for (char& c : digest) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    entry.hash = digest;
    if (!expiry.empty()) {
      entry.expires_at = ParseExpiry(expiry);
      if (!entry.expires_at) {
        error = where + "expiry must be Unix seconds or YYYY-MM-DDTHH:MM:SSZ";
        return false;
      }
    }
    entries_.push_back(std::move(entry));
  }
  return true;
}

TokenStore::Verdict TokenStore::Check(std::string_view token, std::int64_t now) const {
  Verdict verdict;
  if (token.empty()) {
    verdict.reason = "Authentication error: Token cannot be empty";
    return verdict;
  }
  const std::string hash = HashToken(token);
  const Entry* match = nullptr;
  for (const auto& entry : entries_) {
    // Every entry is compared in full; the match is only remembered.
    const bool equal = CRYPTO_memcmp(entry.hash.data(), hash.data(), hash.size()) == 0;
    if (equal && match == nullptr) match = &entry;
  }
  if (match == nullptr) {
    verdict.reason = "Authentication error: invalid tunnel token";
    return verdict;
  }
  if (match->expires_at && *match->expires_at < now) {
    verdict.reason = "Authentication error: tunnel token expired";
    return verdict;
  }
  verdict.ok = true;
  verdict.hash = hash;
  return verdict;
}

}  // namespace tunnelkit::zlayer
