#include "tunnelkit/stream/tls_stream.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>

#include <fmt/format.h>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace tunnelkit {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {
constexpr std::size_t kRecordChunk = 16 * 1024;  // one TLS record of plaintext per SSL_write
constexpr std::size_t kNetworkBuffer = 64 * 1024;
}  // namespace

TlsStream::TlsStream(asio::ip::tcp::socket socket, asio::ssl::context& context, Role role,
                     const std::string& server_name)
    : socket_(std::move(socket)),
      write_idle_(socket_.get_executor(), asio::steady_timer::time_point::max()),
      in_buffer_(kNetworkBuffer),
      out_buffer_(kNetworkBuffer),
      server_name_(server_name) {
  error_code ec;
  socket_.set_option(asio::ip::tcp::no_delay(true), ec);
  ssl_ = SSL_new(context.native_handle());
  if (!ssl_) throw std::runtime_error("SSL_new failed");
  network_in_ = BIO_new(BIO_s_mem());
  network_out_ = BIO_new(BIO_s_mem());
  // Empty memory BIOs mean "retry later", not end of file.
  BIO_set_mem_eof_return(network_in_, -1);
  BIO_set_mem_eof_return(network_out_, -1);
  SSL_set_bio(ssl_, network_in_, network_out_);  // ssl_ owns both BIOs now
  if (role == Role::kClient) {
    SSL_set_connect_state(ssl_);
    if (!server_name.empty()) {
      error_code addr_ec;
      asio::ip::make_address(server_name, addr_ec);
      if (addr_ec) {
        SSL_set_tlsext_host_name(ssl_, server_name.c_str());
        SSL_set1_host(ssl_, server_name.c_str());
      } else {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), server_name.c_str());
      }
    }
  } else {
    SSL_set_accept_state(ssl_);
  }
}

TlsStream::~TlsStream() {
  if (ssl_) SSL_free(ssl_);
}

error_code TlsStream::SslError(int ret, const char* what) {
  int err = SSL_get_error(ssl_, ret);
  unsigned long code = ERR_peek_last_error();
  long verify = SSL_get_verify_result(ssl_);
  if (verify != X509_V_OK && !handshake_done_) {
    last_error_ = fmt::format("{}: certificate verify failed: {}", what,
                              X509_verify_cert_error_string(verify));
  } else if (code != 0) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof buf);
    last_error_ = fmt::format("{}: {}", what, buf);
  } else {
    last_error_ = fmt::format("{}: SSL error {}", what, err);
  }
  ERR_clear_error();
  if (code != 0) return error_code(static_cast<int>(code), asio::error::get_ssl_category());
  return asio::error::connection_aborted;
}

asio::awaitable<error_code> TlsStream::Flush() {
  while (socket_writing_) {
    error_code ignored;
    co_await write_idle_.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
  }
  socket_writing_ = true;
  error_code ec;
  while (!ec && BIO_ctrl_pending(network_out_) > 0) {
    int n = BIO_read(network_out_, out_buffer_.data(), static_cast<int>(out_buffer_.size()));
    if (n <= 0) break;
    co_await asio::async_write(socket_,
                               asio::buffer(out_buffer_.data(), static_cast<std::size_t>(n)),
                               asio::redirect_error(asio::use_awaitable, ec));
  }
  socket_writing_ = false;
  write_idle_.cancel();
  co_return ec;
}

asio::awaitable<error_code> TlsStream::FillFromSocket() {
  error_code ec;
  std::size_t n = co_await socket_.async_read_some(asio::buffer(in_buffer_),
                                                   asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return ec;
  BIO_write(network_in_, in_buffer_.data(), static_cast<int>(n));
  co_return error_code{};
}

asio::awaitable<error_code> TlsStream::Handshake() {
  for (;;) {
    ERR_clear_error();
    int ret = SSL_do_handshake(ssl_);
    if (ret == 1) {
      handshake_done_ = true;
      co_return co_await Flush();
    }
    int err = SSL_get_error(ssl_, ret);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
      if (error_code ec = co_await Flush()) {
        last_error_ = "handshake: " + ec.message();
        co_return ec;
      }
      if (err == SSL_ERROR_WANT_READ) {
        if (error_code ec = co_await FillFromSocket()) {
          last_error_ = "handshake: " + ec.message();
          co_return ec;
        }
      }
      continue;
    }
    error_code ec = SslError(ret, "handshake");
    co_await Flush();  // deliver our alert, if any
    co_return ec;
  }
}

asio::awaitable<IoResult> TlsStream::ReadSome(asio::mutable_buffer buffer) {
  if (buffer.size() == 0) co_return IoResult{};
  for (;;) {
    ERR_clear_error();
    std::size_t n = 0;
    int ret = SSL_read_ex(ssl_, buffer.data(), buffer.size(), &n);
    // Reading can produce records to send (key updates); the writer flushes them if busy.
    if (!socket_writing_ && BIO_ctrl_pending(network_out_) > 0) {
      if (error_code ec = co_await Flush()) co_return IoResult{ec, 0};
    }
    if (ret == 1) co_return IoResult{{}, n};
    int err = SSL_get_error(ssl_, ret);
    if (err == SSL_ERROR_ZERO_RETURN) co_return IoResult{asio::error::eof, 0};
    if (err == SSL_ERROR_WANT_READ) {
      error_code ec = co_await FillFromSocket();
      // A TCP FIN without close_notify is reported as eof too: HTTP framing above us catches
      // truncated bodies, and many peers close that way.
      if (ec) co_return IoResult{ec, 0};
      continue;
    }
    if (err == SSL_ERROR_WANT_WRITE) continue;
    co_return IoResult{SslError(ret, "read"), 0};
  }
}

asio::awaitable<IoResult> TlsStream::Write(asio::const_buffer buffer) {
  const char* p = static_cast<const char*>(buffer.data());
  std::size_t left = buffer.size();
  std::size_t done = 0;
  while (left > 0) {
    ERR_clear_error();
    std::size_t chunk = std::min(left, kRecordChunk);
    std::size_t n = 0;
    int ret = SSL_write_ex(ssl_, p, chunk, &n);
    if (ret != 1) {
      int err = SSL_get_error(ssl_, ret);
      if (err != SSL_ERROR_WANT_WRITE && err != SSL_ERROR_WANT_READ) {
        co_return IoResult{SslError(ret, "write"), done};
      }
      n = 0;
    }
    // Memory BIOs never push back, so the socket write below is the flow control.
    if (error_code ec = co_await Flush()) co_return IoResult{ec, done};
    p += n;
    left -= n;
    done += n;
  }
  co_return IoResult{{}, done};
}

asio::awaitable<error_code> TlsStream::ShutdownWrite() {
  ERR_clear_error();
  int ret = SSL_shutdown(ssl_);  // 0: close_notify queued, the peer's not yet received
  if (ret < 0) {
    co_return SslError(ret, "shutdown");
  }
  co_return co_await Flush();
}

void TlsStream::Reset() {
  error_code ec;
  if (socket_.is_open()) socket_.set_option(asio::socket_base::linger(true, 0), ec);
  socket_.close(ec);
}

std::string TlsStream::Describe() const {
  error_code ec1, ec2;
  auto local = socket_.local_endpoint(ec1);
  auto remote = socket_.remote_endpoint(ec2);
  if (ec1 || ec2) return "tls (closed)";
  return fmt::format("tls {}:{}->{}:{}{}", local.address().to_string(), local.port(),
                     remote.address().to_string(), remote.port(),
                     server_name_.empty() ? "" : " (" + server_name_ + ")");
}

std::string TlsStream::AlpnProtocol() const {
  const unsigned char* data = nullptr;
  unsigned int len = 0;
  SSL_get0_alpn_selected(ssl_, &data, &len);
  return data ? std::string(reinterpret_cast<const char*>(data), len) : std::string();
}

std::string TlsStream::Version() const {
  return SSL_get_version(ssl_);
}

}  // namespace tunnelkit
