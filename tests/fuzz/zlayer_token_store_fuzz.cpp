// fuzz-links: tunnelkit_zlayer_core
// fuzz-sources: plugins/zlayer/src/server/token_store.cpp
// fuzz-libs: OpenSSL::Crypto
// The zlayer server's token file (hash and expiry per line: Unix seconds or
// YYYY-MM-DDTHH:MM:SSZ) and the token check an agent's handshake reaches. Input: the first line
// is the presented token, the rest the file. A file either loads or fails naming the line, the
// same way every time; a token passes only with its hash stored and unexpired, and a verdict
// always says why it fails.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "server/token_store.hpp"

using namespace tunnelkit::zlayer;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::size_t newline = input.find('\n');
  const std::string_view token = input.substr(0, newline);
  const std::string_view file =
      newline == std::string_view::npos ? std::string_view{} : input.substr(newline + 1);

  TokenStore store;
  std::string error;
  if (!store.LoadText(file, "tokens", error)) {
    if (error.rfind("tokens:", 0) != 0) std::abort();
    return 0;
  }
  // Loading is deterministic (no state outside the store).
  TokenStore again;
  if (!again.LoadText(file, "tokens", error) || again.size() != store.size()) std::abort();

  const std::int64_t now = 1'700'000'000;
  const auto verdict = store.Check(token, now);
  if (verdict.ok) {
    if (token.empty() || verdict.hash != HashToken(token) || !verdict.reason.empty()) std::abort();
  } else if (verdict.reason.empty()) {
    std::abort();
  }
  // The presented token, stored without expiry, passes; stored as expired, fails.
  if (!token.empty()) {
    TokenStore own;
    const std::string line = HashToken(token) + "\n";
    if (!own.LoadText(line, "own", error) || !own.Check(token, now).ok) std::abort();
    TokenStore expired;
    const std::string old = HashToken(token) + " " + std::to_string(now - 1) + "\n";
    if (!expired.LoadText(old, "old", error) || expired.Check(token, now).ok) std::abort();
  }
  return 0;
}
