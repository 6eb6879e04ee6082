#include "server/port_pool.hpp"

#include <charconv>

namespace tunnelkit::zlayer {

namespace {

bool ParsePort(std::string_view text, std::uint16_t& port) {
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value == 0 || value > 65535) {
    return false;
  }
  port = static_cast<std::uint16_t>(value);
  return true;
}

}  // namespace

std::optional<PortPool> PortPool::Parse(std::string_view text, std::string& error) {
  const auto dash = text.find('-');
  std::uint16_t low = 0;
  std::uint16_t high = 0;
  if (!ParsePort(text.substr(0, dash), low) ||
      (dash != std::string_view::npos && !ParsePort(text.substr(dash + 1), high))) {
    error = "expected LOW-HIGH with ports 1-65535, got '" + std::string(text) + "'";
    return std::nullopt;
  }
  if (dash == std::string_view::npos) high = low;
  if (low > high) {
    error = "range start " + std::to_string(low) + " is above its end " + std::to_string(high);
    return std::nullopt;
  }
  return PortPool(low, high);
}

std::optional<std::uint16_t> PortPool::Acquire(std::uint16_t requested, std::string& error) {
  if (requested != 0) {
    if (!Contains(requested) || taken_.count(requested) != 0) {
      error = "Registry error: port " + std::to_string(requested) + " is not available";
      return std::nullopt;
    }
    taken_.insert(requested);
    return requested;
  }
  for (unsigned port = low_; port <= high_; ++port) {
    if (taken_.count(static_cast<std::uint16_t>(port)) == 0) {
      taken_.insert(static_cast<std::uint16_t>(port));
      return static_cast<std::uint16_t>(port);
    }
  }
  error = "Registry error: no ports available";
  return std::nullopt;
}

}  // namespace tunnelkit::zlayer
