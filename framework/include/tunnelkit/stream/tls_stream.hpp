// TlsStream: TLS (1.2/1.3, OpenSSL) over a TCP socket, as a tunnelkit::Stream.
//
// OpenSSL runs over memory BIOs and this class moves the records, rather than using
// asio::ssl::stream: that way ShutdownWrite can send close_notify and go on reading (TLS 1.3
// half-close), which asio::ssl::stream's shutdown (send + wait for the peer's) cannot do while
// a read is outstanding. Configuration comes from a boost::asio::ssl::context (see
// tls_context.hpp), so its SSL_CTX settings (verify mode, roots, certificates) apply.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "tunnelkit/stream.hpp"

typedef struct ssl_st SSL;
typedef struct bio_st BIO;

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
  SSL* native_handle() { return ssl_; }
  boost::asio::ip::tcp::socket& socket() { return socket_; }

 private:
  boost::asio::awaitable<boost::system::error_code> Flush();
  boost::asio::awaitable<boost::system::error_code> FillFromSocket();
  boost::system::error_code SslError(int ret, const char* what);

  boost::asio::ip::tcp::socket socket_;
  SSL* ssl_ = nullptr;
  BIO* network_in_ = nullptr;   // bytes from the socket, read by OpenSSL
  BIO* network_out_ = nullptr;  // records written by OpenSSL, sent to the socket
  bool socket_writing_ = false;
  boost::asio::steady_timer write_idle_;  // cancelled when socket_writing_ drops
  std::vector<char> in_buffer_;
  std::vector<char> out_buffer_;
  std::string last_error_;
  std::string server_name_;
  bool handshake_done_ = false;
};

}  // namespace tunnelkit
