#include "agent/service_spec.hpp"

#include <charconv>

namespace tunnelkit::zlayer {

namespace {

bool ParsePort(std::string_view text, std::uint16_t& port, bool allow_zero) {
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || value > 65535 ||
      (value == 0 && !allow_zero)) {
    return false;
  }
  port = static_cast<std::uint16_t>(value);
  return true;
}

}  // namespace

std::string ServiceSpec::ToString() const {
  std::string text = name + ":" + std::to_string(local_port);
  if (remote_port != 0) text += ":" + std::to_string(remote_port);
  if (protocol == codec::ServiceProtocol::kUdp) text += "/udp";
  return text;
}

std::optional<ServiceSpec> ServiceSpec::Parse(std::string_view text, std::string& error) {
  ServiceSpec spec;
  const std::string original(text);
  if (const auto slash = text.rfind('/'); slash != std::string_view::npos) {
    const auto proto = text.substr(slash + 1);
    if (proto == "udp") {
      spec.protocol = codec::ServiceProtocol::kUdp;
    } else if (proto != "tcp") {
      error = "'" + original + "': protocol must be tcp or udp";
      return std::nullopt;
    }
    text = text.substr(0, slash);
  }
  const auto first = text.find(':');
  if (first == std::string_view::npos) {
    error = "'" + original + "': expected NAME:LOCAL_PORT[:REMOTE_PORT][/udp]";
    return std::nullopt;
  }
  spec.name = std::string(text.substr(0, first));
  if (spec.name.empty() || spec.name.size() > 255) {
    error = "'" + original + "': the name must have 1 to 255 characters";
    return std::nullopt;
  }
  for (char c : spec.name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_';
    if (!ok) {
      error = "'" + original + "': the name may only hold letters, digits, '-' and '_'";
      return std::nullopt;
    }
  }
  auto rest = text.substr(first + 1);
  const auto second = rest.find(':');
  if (!ParsePort(rest.substr(0, second), spec.local_port, false)) {
    error = "'" + original + "': invalid local port";
    return std::nullopt;
  }
  if (second != std::string_view::npos &&
      !ParsePort(rest.substr(second + 1), spec.remote_port, true)) {
    error = "'" + original + "': invalid remote port";
    return std::nullopt;
  }
  return spec;
}

}  // namespace tunnelkit::zlayer
