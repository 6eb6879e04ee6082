#include "tunnelkit/net/source_rate_limiter.hpp"

#include <algorithm>

namespace tunnelkit::net {

void SourceRateLimiter::Refill(Bucket& bucket, Clock::time_point now) const {
  if (now <= bucket.updated) return;
  const double seconds = std::chrono::duration<double>(now - bucket.updated).count();
  bucket.tokens = std::min(limits_.burst, bucket.tokens + seconds * limits_.rate);
  bucket.updated = now;
}

SourceRateLimiter::Bucket& SourceRateLimiter::Find(const SourceKey& key, Clock::time_point now) {
  auto it = buckets_.find(key);
  if (it != buckets_.end()) {
    Refill(it->second, now);
    return it->second;
  }
  if (buckets_.size() >= limits_.max_sources) {
    // A full bucket says nothing a missing one would not: drop those first.
    std::erase_if(buckets_, [&](const auto& entry) {
      Bucket refilled = entry.second;
      Refill(refilled, now);
      return refilled.tokens >= limits_.burst;
    });
    if (buckets_.size() >= limits_.max_sources) buckets_.erase(buckets_.begin());
  }
  return buckets_.emplace(key, Bucket{limits_.burst, now}).first->second;
}

bool SourceRateLimiter::Allowed(const boost::asio::ip::address& source, Clock::time_point now) {
  if (!enabled()) return true;
  const auto it = buckets_.find(SourceKeyOf(source));
  if (it == buckets_.end()) return true;
  Refill(it->second, now);
  return it->second.tokens >= 1.0;
}

bool SourceRateLimiter::Spend(const boost::asio::ip::address& source, Clock::time_point now) {
  if (!enabled()) return true;
  Bucket& bucket = Find(SourceKeyOf(source), now);
  if (bucket.tokens < 1.0) return false;
  bucket.tokens -= 1.0;
  return true;
}

}  // namespace tunnelkit::net
