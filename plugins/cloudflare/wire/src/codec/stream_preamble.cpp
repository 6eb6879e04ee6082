#include "tunnelkit/cloudflare/wire/codec/stream_preamble.hpp"

#include <algorithm>
#include <cstdio>

namespace tunnelkit::cloudflare {

namespace {

bool PrefixMatches(std::span<const std::uint8_t> bytes, const std::array<std::uint8_t, 6>& sig) {
  std::size_t n = std::min(bytes.size(), sig.size());
  return std::equal(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n), sig.begin());
}

std::string Hex(std::span<const std::uint8_t> bytes) {
  std::string out;
  char buf[4];
  for (std::size_t i = 0; i < bytes.size() && i < kRpcPreambleSize; ++i) {
    std::snprintf(buf, sizeof buf, "%02x", bytes[i]);
    out += buf;
  }
  return out;
}

}  // namespace

PreambleResult DecodePreamble(std::span<const std::uint8_t> bytes) {
  PreambleResult result;
  bool data = PrefixMatches(bytes, kDataStreamSignature);
  bool rpc = PrefixMatches(bytes, kRpcStreamSignature);
  if (!data && !rpc) {
    result.status = DecodeStatus::kError;
    result.error = "unknown stream signature " + Hex(bytes);
    return result;
  }
  if (rpc) {
    if (bytes.size() < kRpcPreambleSize) return result;
    result.status = DecodeStatus::kOk;
    result.kind = StreamKind::kRpc;
    result.consumed = kRpcPreambleSize;
    return result;
  }
  if (bytes.size() < kDataPreambleSize) return result;
  result.status = DecodeStatus::kOk;
  result.kind = StreamKind::kData;
  result.version = {static_cast<char>(bytes[6]), static_cast<char>(bytes[7])};
  result.consumed = kDataPreambleSize;
  return result;
}

std::array<std::uint8_t, kDataPreambleSize> EncodeDataPreamble() {
  std::array<std::uint8_t, kDataPreambleSize> out{};
  std::copy(kDataStreamSignature.begin(), kDataStreamSignature.end(), out.begin());
  out[6] = kDataStreamVersion[0];
  out[7] = kDataStreamVersion[1];
  return out;
}

}  // namespace tunnelkit::cloudflare
