// fuzz-links: tunnelkit_zlayer_core
// fuzz-sources: plugins/zlayer/src/codec/*.cpp
// fuzz-libs: nlohmann_json::nlohmann_json fuzz_framework_text
// Decodes arbitrary bytes as ZLayer control messages (and data frames); whatever decodes must
// re-encode and decode to the same message.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "codec/codec.hpp"
#include "codec/extension.hpp"

using namespace tunnelkit::zlayer::codec;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::span<const std::uint8_t> bytes(data, size);
  // Every message in the buffer, as a receiver would walk a concatenation.
  while (!bytes.empty()) {
    const auto decoded = Decode(bytes);
    if (!decoded.ok) break;
    if (decoded.consumed == 0 || decoded.consumed > bytes.size()) std::abort();
    const auto encoded = Encode(decoded.message);
    if (!encoded.ok) std::abort();  // a decoded message always fits the limits again
    const auto again = Decode(encoded.bytes);
    if (!again.ok || !(again.message == decoded.message)) std::abort();
    if (const auto* auth = std::get_if<Auth>(&decoded.message))
      (void)DecodeAgentHello(auth->trailer);
    if (const auto* ok = std::get_if<AuthOk>(&decoded.message))
      (void)DecodeServerHello(ok->trailer);
    if (const auto* reg = std::get_if<RegisterOk>(&decoded.message)) {
      (void)DecodeRegisterExtra(reg->trailer);
    }
    bytes = bytes.subspan(decoded.consumed);
  }
  const auto frame = DecodeDataFrame(std::span<const std::uint8_t>(data, size));
  if (frame.ok && frame.frame.payload.size() + 1 != size) std::abort();
  return 0;
}
