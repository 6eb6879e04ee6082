#include "tunnelkit/origin/origin_pool.hpp"

namespace tunnelkit::origin {

std::unique_ptr<OriginConnection> OriginPool::Acquire(const std::string& key,
                                                      std::chrono::milliseconds idle_timeout) {
  auto it = idle_.find(key);
  if (it == idle_.end()) return nullptr;
  auto& stack = it->second;
  auto now = std::chrono::steady_clock::now();
  // Everything older than the timeout is at the bottom of the stack (LIFO order).
  std::size_t expired = 0;
  while (expired < stack.size() && now - stack[expired]->idle_since >= idle_timeout) ++expired;
  stack.erase(stack.begin(), stack.begin() + static_cast<std::ptrdiff_t>(expired));
  if (stack.empty()) {
    idle_.erase(it);
    return nullptr;
  }
  auto connection = std::move(stack.back());
  stack.pop_back();
  if (stack.empty()) idle_.erase(it);
  return connection;
}

void OriginPool::Release(const std::string& key, std::unique_ptr<OriginConnection> connection,
                         std::size_t max_idle) {
  if (max_idle == 0 || !connection) return;
  connection->idle_since = std::chrono::steady_clock::now();
  auto& stack = idle_[key];
  stack.push_back(std::move(connection));
  if (stack.size() > max_idle) {
    stack.erase(stack.begin(),
                stack.begin() + static_cast<std::ptrdiff_t>(stack.size() - max_idle));
  }
}

std::size_t OriginPool::IdleCount(const std::string& key) const {
  auto it = idle_.find(key);
  return it == idle_.end() ? 0 : it->second.size();
}

std::size_t OriginPool::IdleCount() const {
  std::size_t n = 0;
  for (const auto& [key, stack] : idle_) n += stack.size();
  return n;
}

void OriginPool::Clear() {
  idle_.clear();
}

}  // namespace tunnelkit::origin
