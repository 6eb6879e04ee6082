// Helpers for the multiplexer tests: run a coroutine with a deadline, a TCP socket pair on
// 127.0.0.1 as tunnelkit::TcpStreams, deterministic payloads and streaming SHA-256.
#pragma once

#include "sha256.hpp"

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
#include "tunnelkit/stream/socket_stream.hpp"

namespace tunnelkit::mux::test {
namespace asio = boost::asio;
using tunnelkit::test::Sha256;

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

// A connected pair of TCP sockets on 127.0.0.1 (ephemeral port).
inline std::pair<std::unique_ptr<Stream>, std::unique_ptr<Stream>> TcpPair(asio::io_context& io) {
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  asio::ip::tcp::socket client(io);
  client.connect(acceptor.local_endpoint());
  asio::ip::tcp::socket server = acceptor.accept();
  return {std::make_unique<TcpStream>(std::move(client)),
          std::make_unique<TcpStream>(std::move(server))};
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
  co_return sha.HexFinal();
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
  out.sha256 = sha.HexFinal();
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
  return sha.HexFinal();
}

}  // namespace tunnelkit::mux::test
