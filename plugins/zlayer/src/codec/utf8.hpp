// UTF-8 validation as upstream's decoder applies it to every string field.
#pragma once

#include <string_view>

namespace tunnelkit::zlayer::codec {

// Strict RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF.
bool IsValidUtf8(std::string_view text);

}  // namespace tunnelkit::zlayer::codec
