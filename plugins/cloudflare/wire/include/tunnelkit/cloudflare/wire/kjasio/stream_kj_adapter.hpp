// A kj::AsyncIoStream over a tunnelkit::Stream, so Cap'n Proto (RPC, message streams) runs over
// any of our streams: a QUIC stream, a TCP socket, an in-memory pipe.
//
// KJ may drop a read promise at any time, and with it the buffer it passed. The adapter
// therefore never lets the Stream write into KJ's buffer: it reads into its own buffer and
// copies out only while the read is still wanted; bytes that arrive after a cancelled read are
// kept for the next one. Writes are copied and queued (one Stream::Write at a time, as Stream
// requires), so a dropped write promise never leaves a dangling buffer either.
#pragma once

#include <memory>

#include <kj/async-io.h>

#include "tunnelkit/stream.hpp"

namespace tunnelkit::cloudflare {

class StreamKjAdapter final : public kj::AsyncIoStream {
 public:
  explicit StreamKjAdapter(std::shared_ptr<Stream> stream);
  ~StreamKjAdapter() noexcept(false);

  kj::Promise<size_t> tryRead(void* buffer, size_t minBytes, size_t maxBytes) override;
  kj::Promise<void> write(const void* buffer, size_t size) override;
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override;
  kj::Promise<void> whenWriteDisconnected() override;
  void shutdownWrite() override;
  void abortRead() override;

  const std::shared_ptr<Stream>& stream() const { return stream_; }

  struct State;

 private:
  std::shared_ptr<Stream> stream_;
  std::shared_ptr<State> state_;
};

}  // namespace tunnelkit::cloudflare
