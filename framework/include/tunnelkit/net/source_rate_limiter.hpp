// A token bucket per source (net/source_address.hpp): each source may spend `burst` events at
// once and `rate` more per second. Servers spend one per failed authentication and refuse a
// source's new connections, before reading anything, while its bucket is empty. The table
// holds at most `max_sources` buckets; full buckets (a source that stopped failing) are the
// first to go. Not thread-safe.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <unordered_map>

#include <boost/asio/ip/address.hpp>

#include "tunnelkit/net/source_address.hpp"

namespace tunnelkit::net {

struct SourceRateLimits {
  double rate = 1.0;  // events per second refilled; <= 0 with burst 0 disables the limiter
  double burst = 10;  // bucket size
  std::size_t max_sources = 4096;
};

class SourceRateLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  explicit SourceRateLimiter(SourceRateLimits limits = {}) : limits_(limits) {}

  bool enabled() const { return limits_.burst > 0; }
  // True while `source` has at least one event left.
  bool Allowed(const boost::asio::ip::address& source, Clock::time_point now = Clock::now());
  // Spends one event; false when the source had none left.
  bool Spend(const boost::asio::ip::address& source, Clock::time_point now = Clock::now());

  std::size_t tracked_sources() const { return buckets_.size(); }
  std::uint64_t refused() const { return refused_; }
  void CountRefusal() { ++refused_; }

 private:
  struct Bucket {
    double tokens = 0;
    Clock::time_point updated;
  };
  void Refill(Bucket& bucket, Clock::time_point now) const;
  Bucket& Find(const SourceKey& key, Clock::time_point now);

  SourceRateLimits limits_;
  std::unordered_map<SourceKey, Bucket, SourceKeyHash> buckets_;
  std::uint64_t refused_ = 0;
};

}  // namespace tunnelkit::net
