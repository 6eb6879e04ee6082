// Helpers for the multiplexer tests: run a coroutine with a deadline, a TCP socket pair on
// 127.0.0.1 wrapped as tunnelkit::Stream, deterministic payloads and streaming SHA-256.
#pragma once

#include <openssl/evp.h>

#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "tunnelkit/stream.hpp"

namespace tunnelkit::mux::test {
namespace asio = boost::asio;

// Runs `body` on `io` for at most `timeout`; fails the test if it throws or does not finish.
inline void RunWithDeadline(asio::io_context& io, std::function<asio::awaitable<void>()> body,
                            std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  bool done = false;
  std::exception_ptr error;
  // The callable form keeps `body` (and what it captures) alive as long as the coroutine.
  asio::co_spawn(io, std::move(body), [&](std::exception_ptr e) {
    done = true;
    error = e;
    io.stop();
  });
  io.run_for(timeout);
  ASSERT_TRUE(done) << "test coroutine did not finish within " << timeout.count() << " ms";
  if (error) {
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      FAIL() << "test coroutine threw: " << e.what();
    }
  }
}

// Ordinary TCP socket as a Stream (the framework's own adapter lives elsewhere; the tests only
// need the basics).
class TcpTestStream final : public Stream {
 public:
  explicit TcpTestStream(asio::ip::tcp::socket socket) : socket_(std::move(socket)) {
    socket_.set_option(asio::ip::tcp::no_delay(true));
  }
  asio::any_io_executor get_executor() override { return socket_.get_executor(); }
  asio::awaitable<IoResult> ReadSome(asio::mutable_buffer buffer) override {
    IoResult r;
    r.bytes =
        co_await socket_.async_read_some(buffer, asio::redirect_error(asio::use_awaitable, r.ec));
    co_return r;
  }
  asio::awaitable<IoResult> Write(asio::const_buffer buffer) override {
    IoResult r;
    r.bytes = co_await asio::async_write(socket_, buffer,
                                         asio::redirect_error(asio::use_awaitable, r.ec));
    co_return r;
  }
  asio::awaitable<boost::system::error_code> ShutdownWrite() override {
    boost::system::error_code ec;
    socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
    co_return ec;
  }
  void Reset() override {
    boost::system::error_code ec;
    socket_.set_option(asio::socket_base::linger(true, 0), ec);
    socket_.close(ec);
  }
  std::string Describe() const override { return "tcp test stream"; }

 private:
  asio::ip::tcp::socket socket_;
};

// A connected pair of TCP sockets on 127.0.0.1 (ephemeral port).
inline std::pair<std::unique_ptr<Stream>, std::unique_ptr<Stream>> TcpPair(asio::io_context& io) {
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  asio::ip::tcp::socket client(io);
  client.connect(acceptor.local_endpoint());
  asio::ip::tcp::socket server = acceptor.accept();
  return {std::make_unique<TcpTestStream>(std::move(client)),
          std::make_unique<TcpTestStream>(std::move(server))};
}

// Deterministic pseudo-random bytes (xorshift64*), so sender and receiver need not share memory.
class PatternSource {
 public:
  explicit PatternSource(std::uint64_t seed) : state_(seed | 1) {}
  void Fill(std::uint8_t* out, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      if (left_ == 0) {
        state_ ^= state_ >> 12;
        state_ ^= state_ << 25;
        state_ ^= state_ >> 27;
        word_ = state_ * 0x2545F4914F6CDD1DULL;
        left_ = 8;
      }
      out[i] = static_cast<std::uint8_t>(word_);
      word_ >>= 8;
      --left_;
    }
  }

 private:
  std::uint64_t state_;
  std::uint64_t word_ = 0;
  int left_ = 0;
};

class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr); }
  ~Sha256() { EVP_MD_CTX_free(ctx_); }
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void Update(const void* data, std::size_t n) { EVP_DigestUpdate(ctx_, data, n); }
  std::string HexDigest() {
    unsigned char digest[32];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx_, digest, &len);
    static const char* kHex = "0123456789abcdef";
    std::string hex;
    for (unsigned i = 0; i < len; ++i) {
      hex.push_back(kHex[digest[i] >> 4]);
      hex.push_back(kHex[digest[i] & 15]);
    }
    return hex;
  }

 private:
  EVP_MD_CTX* ctx_;
};

// Writes `total` pattern bytes to `stream` in `chunk`-sized writes; returns their SHA-256.
inline asio::awaitable<std::string> SendPattern(Stream& stream, std::uint64_t seed,
                                                std::size_t total, std::size_t chunk = 64 * 1024,
                                                bool shutdown = true) {
  PatternSource source(seed);
  Sha256 sha;
  std::vector<std::uint8_t> buf(chunk);
  std::size_t sent = 0;
  while (sent < total) {
    const std::size_t n = std::min(chunk, total - sent);
    source.Fill(buf.data(), n);
    sha.Update(buf.data(), n);
    IoResult r = co_await stream.Write(asio::buffer(buf.data(), n));
    if (r.ec) throw std::runtime_error("SendPattern write: " + r.ec.message());
    sent += n;
  }
  if (shutdown) {
    auto ec = co_await stream.ShutdownWrite();
    if (ec) throw std::runtime_error("SendPattern shutdown: " + ec.message());
  }
  co_return sha.HexDigest();
}

struct Received {
  std::size_t bytes = 0;
  std::string sha256;
  boost::system::error_code end;  // eof on a clean end
};

// Reads until eof or error; hashes everything read.
inline asio::awaitable<Received> ReceiveAll(Stream& stream, std::size_t buf_size = 64 * 1024) {
  Received out;
  Sha256 sha;
  std::vector<std::uint8_t> buf(buf_size);
  while (true) {
    IoResult r = co_await stream.ReadSome(asio::buffer(buf));
    if (r.ec) {
      out.end = r.ec;
      break;
    }
    sha.Update(buf.data(), r.bytes);
    out.bytes += r.bytes;
  }
  out.sha256 = sha.HexDigest();
  co_return out;
}

inline std::string PatternSha(std::uint64_t seed, std::size_t total) {
  PatternSource source(seed);
  Sha256 sha;
  std::vector<std::uint8_t> buf(64 * 1024);
  for (std::size_t done = 0; done < total;) {
    const std::size_t n = std::min(buf.size(), total - done);
    source.Fill(buf.data(), n);
    sha.Update(buf.data(), n);
    done += n;
  }
  return sha.HexDigest();
}

}  // namespace tunnelkit::mux::test
