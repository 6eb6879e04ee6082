// Caps on concurrent connections, overall and per source (net/source_address.hpp), held by
// leases: TryAcquire gives a lease while both caps have room, and the slot is free again when
// the lease goes. Servers take a lease per accepted connection (public ingress, connections
// not yet authenticated) and refuse cheaply when there is none. Not thread-safe: used from the
// io_context that accepts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <unordered_map>

#include <boost/asio/ip/address.hpp>

#include "tunnelkit/net/source_address.hpp"

namespace tunnelkit::net {

struct ConnectionLimits {
  std::size_t total = 0;       // 0: no overall cap
  std::size_t per_source = 0;  // 0: no per-source cap
};

class ConnectionLimiter {
  struct State;

 public:
  enum class Refusal { kNone, kTotal, kPerSource };

  class Lease {
   public:
    Lease() = default;
    Lease(Lease&& other) noexcept;
    Lease& operator=(Lease&& other) noexcept;
    ~Lease();
    void Release();
    explicit operator bool() const { return state_ != nullptr; }

   private:
    friend class ConnectionLimiter;
    Lease(std::shared_ptr<State> state, SourceKey key) : state_(std::move(state)), key_(key) {}
    std::shared_ptr<State> state_;
    SourceKey key_;
  };

  explicit ConnectionLimiter(ConnectionLimits limits = {});

  // A lease when both caps have room; otherwise nullopt, `why` says which cap.
  std::optional<Lease> TryAcquire(const boost::asio::ip::address& source, Refusal* why = nullptr);

  std::size_t active() const;
  std::size_t active(const boost::asio::ip::address& source) const;
  std::uint64_t refused() const;
  const ConnectionLimits& limits() const;

 private:
  std::shared_ptr<State> state_;
};

}  // namespace tunnelkit::net
