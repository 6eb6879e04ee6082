#include "tunnelkit/net/connection_limiter.hpp"

namespace tunnelkit::net {

struct ConnectionLimiter::State {
  ConnectionLimits limits;
  std::size_t active = 0;
  std::uint64_t refused = 0;
  // Only sources with a live lease: the map never holds more than `active` entries.
  std::unordered_map<SourceKey, std::size_t, SourceKeyHash> per_source;

  void Release(const SourceKey& key) {
    --active;
    auto it = per_source.find(key);
    if (it != per_source.end() && --it->second == 0) per_source.erase(it);
  }
};

ConnectionLimiter::Lease::Lease(Lease&& other) noexcept
    : state_(std::move(other.state_)), key_(other.key_) {}

ConnectionLimiter::Lease& ConnectionLimiter::Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    Release();
    state_ = std::move(other.state_);
    key_ = other.key_;
  }
  return *this;
}

ConnectionLimiter::Lease::~Lease() {
  Release();
}

void ConnectionLimiter::Lease::Release() {
  if (state_) {
    state_->Release(key_);
    state_.reset();
  }
}

ConnectionLimiter::ConnectionLimiter(ConnectionLimits limits) : state_(std::make_shared<State>()) {
  state_->limits = limits;
}

std::optional<ConnectionLimiter::Lease> ConnectionLimiter::TryAcquire(
    const boost::asio::ip::address& source, Refusal* why) {
  auto& s = *state_;
  if (s.limits.total != 0 && s.active >= s.limits.total) {
    ++s.refused;
    if (why) *why = Refusal::kTotal;
    return std::nullopt;
  }
  const SourceKey key = SourceKeyOf(source);
  std::size_t& count = s.per_source[key];
  if (s.limits.per_source != 0 && count >= s.limits.per_source) {
    ++s.refused;
    if (why) *why = Refusal::kPerSource;
    return std::nullopt;
  }
  ++count;
  ++s.active;
  if (why) *why = Refusal::kNone;
  return Lease(state_, key);
}

std::size_t ConnectionLimiter::active() const {
  return state_->active;
}

std::size_t ConnectionLimiter::active(const boost::asio::ip::address& source) const {
  const auto it = state_->per_source.find(SourceKeyOf(source));
  return it == state_->per_source.end() ? 0 : it->second;
}

std::uint64_t ConnectionLimiter::refused() const {
  return state_->refused;
}

const ConnectionLimits& ConnectionLimiter::limits() const {
  return state_->limits;
}

}  // namespace tunnelkit::net
