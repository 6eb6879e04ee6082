// PrefixedStream: a stream whose first reads return bytes that were already taken from the
// inner stream (a protocol head read in one go together with the start of the body), then
// read through. Writes, half-close and reset go straight to the inner stream.
#pragma once

#include <cstdint>
#include <vector>

#include "tunnelkit/stream.hpp"

namespace tunnelkit {

class PrefixedStream final : public Stream {
 public:
  // `inner` must outlive this object.
  PrefixedStream(Stream& inner, std::vector<std::uint8_t> prefix);

  boost::asio::any_io_executor get_executor() override { return inner_.get_executor(); }
  boost::asio::awaitable<IoResult> ReadSome(boost::asio::mutable_buffer buffer) override;
  boost::asio::awaitable<IoResult> Write(boost::asio::const_buffer buffer) override;
  boost::asio::awaitable<boost::system::error_code> ShutdownWrite() override;
  void Reset() override { inner_.Reset(); }
  std::string Describe() const override { return inner_.Describe(); }

 private:
  Stream& inner_;
  std::vector<std::uint8_t> prefix_;
  std::size_t head_ = 0;
};

}  // namespace tunnelkit
