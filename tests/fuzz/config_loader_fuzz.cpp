// fuzz-links:
// fuzz-libs: fuzz_framework_config tunnelkit_proto fuzz_framework_text
// The configuration loader (YAML or JSON file onto the typed Tunnel message, by reflection),
// then the core checks. Any text gives a message or issues that each describe themselves in
// one line; a message without issues renders as YAML (secrets shown) that loads to the same
// message.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include <google/protobuf/util/message_differencer.h>

#include "tunnelkit/config/config_loader.hpp"

using namespace tunnelkit::config;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  ConfigLoader loader;
  loader.MergeText(text, "fuzz.yaml");
  const bool merged = loader.issues().empty();
  loader.Validate();
  for (const auto& issue : loader.issues()) {
    if (issue.Describe().empty()) std::abort();
  }
  if (!merged) return 0;
  const std::string yaml = RenderYaml(loader.config(), /*mask_secrets=*/false);
  ConfigLoader again;
  again.MergeText(yaml, "rendered.yaml");
  if (!again.issues().empty()) std::abort();
  if (!google::protobuf::util::MessageDifferencer::Equals(loader.config(), again.config())) {
    std::abort();
  }
  return 0;
}
