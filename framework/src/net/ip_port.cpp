#include "tunnelkit/net/ip_port.hpp"

namespace tunnelkit::net {

namespace asio = boost::asio;
using asio::ip::tcp;

Result<tcp::endpoint> ParseIpPort(const std::string& text, bool allow_port_zero) {
  std::string host, port;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find("]:");
    if (close != std::string::npos) {
      host = text.substr(1, close - 1);
      port = text.substr(close + 2);
    }
  } else if (auto colon = text.rfind(':'); colon != std::string::npos) {
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  boost::system::error_code ec;
  auto address = asio::ip::make_address(host, ec);
  int number = 0;
  bool port_ok = !port.empty() && port.size() <= 5 &&
                 port.find_first_not_of("0123456789") == std::string::npos &&
                 ((number = std::stoi(port)) > 0 || allow_port_zero) && number <= 65535;
  if (host.empty() || ec || !port_ok) {
    return Error::Invalid("expected IP:PORT or [IPV6]:PORT, got '" + text + "'");
  }
  return tcp::endpoint{address, static_cast<unsigned short>(number)};
}

}  // namespace tunnelkit::net
