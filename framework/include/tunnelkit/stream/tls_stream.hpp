// TlsStream: TLS (1.2/1.3, OpenSSL) over a TCP socket, as a tunnelkit::Stream.
//
// OpenSSL reads and writes the non-blocking socket itself (a socket BIO) and Asio only says
// when the socket is ready, rather than asio::ssl::stream or memory BIOs: records then go
// between the kernel and OpenSSL's own buffers with no copy in between (memory BIOs cost four
// copies of every byte, the largest cost of a TLS tunnel after the cipher), and ShutdownWrite
// can send close_notify and go on reading (TLS 1.3 half-close), which asio::ssl::stream's
// shutdown cannot do while a read is outstanding. Configuration comes from a
// boost::asio::ssl::context (see tls_context.hpp), so its SSL_CTX settings (verify mode,
// roots, certificates) apply. One reader and one writer may run at once (OpenSSL supports
// interleaved SSL_read / SSL_write on one connection from one thread). Outgoing records are
// gathered and leave in one send() per Write (up to 128 KiB), not one per 16 KiB record.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>

#include "tunnelkit/stream.hpp"

typedef struct ssl_st SSL;

namespace tunnelkit {

class TlsStream final : public Stream {
 public:
  enum class Role { kClient, kServer };

  // `socket` must be connected. For a client, `server_name` is sent as SNI and, when the
  // context verifies peers, checked against the certificate (DNS name or IP address).
  TlsStream(boost::asio::ip::tcp::socket socket, boost::asio::ssl::context& context, Role role,
            const std::string& server_name = {});
  ~TlsStream() override;
  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;

  // Runs the handshake. On failure the error's message() says why (for verification
  // failures: "certificate verify failed: <reason>" via LastError()).
  boost::asio::awaitable<boost::system::error_code> Handshake();

  boost::asio::any_io_executor get_executor() override { return socket_.get_executor(); }
  boost::asio::awaitable<IoResult> ReadSome(boost::asio::mutable_buffer buffer) override;
  boost::asio::awaitable<IoResult> Write(boost::asio::const_buffer buffer) override;
  // Sends close_notify; reading continues until the peer's close_notify (eof).
  boost::asio::awaitable<boost::system::error_code> ShutdownWrite() override;
  void Reset() override;
  std::string Describe() const override;

  // A human-readable reason for the last TLS failure (empty if none).
  const std::string& LastError() const { return last_error_; }
  // The negotiated ALPN protocol (empty if none) and TLS version ("TLSv1.3").
  std::string AlpnProtocol() const;
  std::string Version() const;
  // send() calls made on the socket so far (records are gathered: see RecordBatch).
  std::uint64_t socket_writes() const;
  SSL* native_handle() { return ssl_; }
  boost::asio::ip::tcp::socket& socket() { return socket_; }

 private:
  // After an OpenSSL call returned `ret` <= 0: waits for the socket when OpenSSL asked to
  // (returns {}), or says why the call failed.
  boost::asio::awaitable<boost::system::error_code> WaitOrFail(int ret, const char* what);
  boost::system::error_code SslError(int ret, const char* what);
  // Sends every gathered record (waiting for the socket as needed).
  boost::asio::awaitable<boost::system::error_code> Flush();

  struct RecordBatch;

  boost::asio::ip::tcp::socket socket_;
  std::unique_ptr<RecordBatch> out_;  // OpenSSL's write BIO gathers records here
  SSL* ssl_ = nullptr;
  std::string last_error_;
  std::string server_name_;
  bool handshake_done_ = false;
};

}  // namespace tunnelkit
