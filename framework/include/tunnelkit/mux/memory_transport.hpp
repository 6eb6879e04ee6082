// MemoryTransport: two connected in-process Streams with bounded buffers, like a socket pair
// with small kernel buffers. A writer suspends while the peer's buffer is full, so backpressure
// behaves as on TCP. For tests and benchmarks; both ends run on one executor (one thread).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <utility>

#include "tunnelkit/stream.hpp"

namespace tunnelkit::mux {

struct MemoryPipe;

class MemoryTransport final : public Stream {
 public:
  // Two connected ends; each direction buffers at most `capacity` bytes.
  static std::pair<std::unique_ptr<MemoryTransport>, std::unique_ptr<MemoryTransport>> Pair(
      const boost::asio::any_io_executor& executor, std::size_t capacity = 256 * 1024);
  ~MemoryTransport() override;

  boost::asio::any_io_executor get_executor() override { return executor_; }
  boost::asio::awaitable<IoResult> ReadSome(boost::asio::mutable_buffer buffer) override;
  boost::asio::awaitable<IoResult> Write(boost::asio::const_buffer buffer) override;
  boost::asio::awaitable<boost::system::error_code> ShutdownWrite() override;
  // Both directions fail: the peer's reads and writes see connection_reset.
  void Reset() override;
  std::string Describe() const override { return "memory " + name_; }

  // Bytes written to this end and not yet read by the peer.
  std::size_t queued_outbound() const;

 private:
  MemoryTransport(boost::asio::any_io_executor executor, std::shared_ptr<MemoryPipe> in,
                  std::shared_ptr<MemoryPipe> out, std::string name);

  boost::asio::any_io_executor executor_;
  std::shared_ptr<MemoryPipe> in_;
  std::shared_ptr<MemoryPipe> out_;
  std::string name_;
  bool reset_ = false;
};

}  // namespace tunnelkit::mux
