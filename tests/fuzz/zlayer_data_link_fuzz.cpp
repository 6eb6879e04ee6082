// fuzz-links: tunnelkit_zlayer_core
// fuzz-sources: plugins/zlayer/src/transport/data_link.cpp plugins/zlayer/src/codec/uuid.cpp
// fuzz-libs: fuzz_framework_text
// The `Tunnelkit-Link` header of a zlayer data upgrade (tunnel id and data secret), read from
// anonymous clients before any authentication. A value parses only when it is exactly what
// FormatDataLinkCredential writes, up to the case of its hex digits: formatting the parsed
// credential gives the input in lower case, and parses back to the same credential.
#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "transport/data_link.hpp"

using namespace tunnelkit::zlayer::transport;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const auto credential = ParseDataLinkCredential(input);
  if (!credential) return 0;
  const std::string text = FormatDataLinkCredential(*credential);
  std::string lower(input);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (text != lower) std::abort();
  const auto again = ParseDataLinkCredential(text);
  if (!again || again->secret != credential->secret || FormatDataLinkCredential(*again) != text) {
    std::abort();
  }
  return 0;
}
