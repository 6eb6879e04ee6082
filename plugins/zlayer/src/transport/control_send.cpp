#include "transport/control_send.hpp"

#include <spdlog/spdlog.h>

#include "codec/codec.hpp"

namespace tunnelkit::zlayer::transport {

bool SendControl(const std::shared_ptr<WsConnection>& conn, const codec::Message& message) {
  const auto encoded = codec::Encode(message);
  if (!encoded.ok) {
    spdlog::error("zlayer: cannot encode {}: {}", codec::MessageTypeName(codec::TypeOf(message)),
                  encoded.error);
    return false;
  }
  return conn->Queue(encoded.bytes);
}

}  // namespace tunnelkit::zlayer::transport
