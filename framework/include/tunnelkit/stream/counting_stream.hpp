// CountingStream: passes everything through to an inner stream and adds the bytes read and
// written to two metrics counters (a tunnel's bytes-in / bytes-out).
#pragma once

#include <memory>

#include "tunnelkit/metrics/registry.hpp"
#include "tunnelkit/stream.hpp"

namespace tunnelkit {

class CountingStream final : public Stream {
 public:
  CountingStream(std::shared_ptr<Stream> inner, metrics::Counter read, metrics::Counter written)
      : inner_(std::move(inner)), read_(read), written_(written) {}

  boost::asio::any_io_executor get_executor() override { return inner_->get_executor(); }
  boost::asio::awaitable<IoResult> ReadSome(boost::asio::mutable_buffer buffer) override {
    IoResult r = co_await inner_->ReadSome(buffer);
    read_.Inc(r.bytes);
    co_return r;
  }
  boost::asio::awaitable<IoResult> Write(boost::asio::const_buffer buffer) override {
    IoResult r = co_await inner_->Write(buffer);
    written_.Inc(r.bytes);
    co_return r;
  }
  boost::asio::awaitable<boost::system::error_code> ShutdownWrite() override {
    co_return co_await inner_->ShutdownWrite();
  }
  void Reset() override { inner_->Reset(); }
  std::string Describe() const override { return inner_->Describe(); }
  Stream& inner() { return *inner_; }

 private:
  std::shared_ptr<Stream> inner_;
  metrics::Counter read_;
  metrics::Counter written_;
};

}  // namespace tunnelkit
