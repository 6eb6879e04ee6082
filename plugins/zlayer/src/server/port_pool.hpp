// The public port range of a server (--ports LOW-HIGH) and which ports are taken.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>

namespace tunnelkit::zlayer {

class PortPool {
 public:
  PortPool() = default;
  PortPool(std::uint16_t low, std::uint16_t high) : low_(low), high_(high) {}

  // "30000-31000" (or a single port); false with a reason.
  static std::optional<PortPool> Parse(std::string_view text, std::string& error);

  // requested 0: the lowest free port; otherwise that port if inside the range and free.
  // nullopt with upstream's reason ("Registry error: ...").
  std::optional<std::uint16_t> Acquire(std::uint16_t requested, std::string& error);
  void Release(std::uint16_t port) { taken_.erase(port); }
  bool Contains(std::uint16_t port) const { return port >= low_ && port <= high_; }
  std::uint16_t low() const { return low_; }
  std::uint16_t high() const { return high_; }
  std::size_t in_use() const { return taken_.size(); }

 private:
  std::uint16_t low_ = 30000;
  std::uint16_t high_ = 31000;
  std::set<std::uint16_t> taken_;
};

}  // namespace tunnelkit::zlayer
