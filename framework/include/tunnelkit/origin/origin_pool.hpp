// OriginPool: idle keep-alive connections to local origins, reused across requests. Per origin
// key: LIFO (the most recently used connection is the warmest), at most `max_idle` kept, each
// dropped once idle longer than its timeout.
#pragma once

#include <chrono>
#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <boost/beast/core/flat_buffer.hpp>

#include "tunnelkit/stream.hpp"

namespace tunnelkit::origin {

// One connection to an origin plus the bytes read from it but not parsed yet.
struct OriginConnection {
  std::unique_ptr<Stream> stream;
  boost::beast::flat_buffer buffer;
  std::chrono::steady_clock::time_point idle_since;
  std::uint64_t requests = 0;  // served on this connection so far
};

class OriginPool {
 public:
  // The newest idle connection for `key` that has been idle less than `idle_timeout`
  // (older ones are closed); null if none.
  std::unique_ptr<OriginConnection> Acquire(const std::string& key,
                                            std::chrono::milliseconds idle_timeout);
  // Parks a connection; the oldest is closed when more than `max_idle` are parked.
  void Release(const std::string& key, std::unique_ptr<OriginConnection> connection,
               std::size_t max_idle);
  std::size_t IdleCount(const std::string& key) const;
  std::size_t IdleCount() const;
  // Closes every idle connection.
  void Clear();

 private:
  std::map<std::string, std::vector<std::unique_ptr<OriginConnection>>> idle_;
};

}  // namespace tunnelkit::origin
