// fuzz-links: tunnelkit_zlayer_core
// fuzz-sources: plugins/zlayer/src/transport/upgrade_head.cpp
// fuzz-libs: spdlog::spdlog OpenSSL::SSL OpenSSL::Crypto
// The first bytes of a connection to the zlayer server's public port, read as the front door
// reads them: up to the blank line (at most FrontDoor::kMaxHead bytes), then parsed to decide
// between a data-plane upgrade and a control connection. A head taken as a data upgrade is a
// WebSocket upgrade that names the chosen data subprotocol.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include <boost/beast/http/rfc7230.hpp>
#include <boost/beast/websocket/rfc6455.hpp>

#include "transport/front_door.hpp"
#include "transport/upgrade_head.hpp"

using namespace tunnelkit::zlayer::transport;
namespace http = boost::beast::http;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const std::size_t end = bytes.find("\r\n\r\n");
  if (end == std::string_view::npos || end + 4 > FrontDoor::kMaxHead + 1024) return 0;
  const std::string_view head = bytes.substr(0, end + 4);
  UpgradeRequest request;
  const auto kind = ParseDataUpgrade(head, FrontDoor::kMaxHead, request);
  if (!kind) return 0;
  if (!boost::beast::websocket::is_upgrade(request)) std::abort();
  bool named = false;
  for (const auto token : http::token_list(request[http::field::sec_websocket_protocol])) {
    if (token == SubprotocolOf(*kind)) named = true;
  }
  if (!named) std::abort();
  // The same head parses the same way again (no state between connections).
  UpgradeRequest again;
  if (ParseDataUpgrade(head, FrontDoor::kMaxHead, again) != kind ||
      again.target() != request.target()) {
    std::abort();
  }
  return 0;
}
