// One service an agent exposes: NAME:LOCAL_PORT[:REMOTE_PORT][/udp] (the --service flag).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "codec/messages.hpp"

namespace tunnelkit::zlayer {

struct ServiceSpec {
  std::string name;  // 1-255 of [A-Za-z0-9_-], as upstream's config validator requires
  codec::ServiceProtocol protocol = codec::ServiceProtocol::kTcp;
  std::uint16_t local_port = 0;
  std::uint16_t remote_port = 0;  // 0: any port of the server's range

  std::string ToString() const;
  static std::optional<ServiceSpec> Parse(std::string_view text, std::string& error);
};

}  // namespace tunnelkit::zlayer
