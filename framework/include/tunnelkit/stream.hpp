// Stream: one bidirectional byte stream with half-close. TCP sockets, TLS streams, multiplexed
// streams, QUIC streams and WebSocket channels all implement it, so proxy code (splice, HTTP
// forwarding) is written once.
//
// All operations run on the stream's executor (one io_context thread); a stream is not
// thread-safe. At most one ReadSome and one Write may be outstanding at a time.
#pragma once

#include <cstddef>
#include <string>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/system/error_code.hpp>

namespace tunnelkit {

class FramedStream;  // tunnelkit/stream/framed_stream.hpp

struct IoResult {
  boost::system::error_code ec;  // boost::asio::error::eof once the peer half-closed
  std::size_t bytes = 0;
};

class Stream {
 public:
  virtual ~Stream() = default;

  virtual boost::asio::any_io_executor get_executor() = 0;

  // Reads at least one byte, or reports eof (peer finished writing) or an error.
  virtual boost::asio::awaitable<IoResult> ReadSome(boost::asio::mutable_buffer buffer) = 0;

  // Writes the whole buffer (suspends while flow control or the socket pushes back).
  virtual boost::asio::awaitable<IoResult> Write(boost::asio::const_buffer buffer) = 0;

  // Half-close: no more writes from this side; reads go on until the peer finishes.
  virtual boost::asio::awaitable<boost::system::error_code> ShutdownWrite() = 0;

  // Abortive close of both directions (RST on TCP, reset on a multiplexed stream).
  // Outstanding operations complete with an error. Safe to call more than once.
  virtual void Reset() = 0;

  // For logs: "tcp 127.0.0.1:5000->127.0.0.1:8080", "ferro stream 4".
  virtual std::string Describe() const = 0;

  // Optional fast paths for adapters (StreamRef): a read or write that needs no waiting may
  // complete here, at once, sparing a coroutine per operation. false: take ReadSome / Write.
  // A true TryReadSome reports what ReadSome would (bytes, eof or an error); a true TryWrite
  // took the whole buffer.
  virtual bool TryReadSome(boost::asio::mutable_buffer /*buffer*/, IoResult& /*result*/) {
    return false;
  }
  virtual bool TryWrite(boost::asio::const_buffer /*buffer*/, IoResult& /*result*/) {
    return false;
  }

  // Capability queries: what a stream can do beyond the calls above, asked by the proxy code
  // (Splice, StreamRef) instead of a dynamic_cast to a concrete type, so that a backend's
  // stream gets the fast paths by saying what it is, and wrappers (TLS, counting, prefixed)
  // get none by default.
  //
  // The connected socket when this stream is that socket and nothing more (bytes written to it
  // reach the peer unchanged): its owner may wait on it, write to it directly, splice(2) it.
  virtual boost::asio::ip::tcp::socket* plain_tcp_socket() { return nullptr; }
  virtual boost::asio::local::stream_protocol::socket* plain_unix_socket() { return nullptr; }
  // A multiplexed stream's frame-level and kernel-path operations (whole payloads without a
  // copy, splice(2) on a plain-TCP session), else nullptr.
  virtual FramedStream* framed() { return nullptr; }
};

}  // namespace tunnelkit
