#include "tunnelkit/stream/tls_stream.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <cerrno>

#include <fmt/format.h>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "tunnelkit/stream/sigpipe.hpp"

namespace tunnelkit {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {
// OpenSSL reads ahead into a buffer this large: one recv() takes several records, rather than
// one recv() for each record's header and another for its body.
constexpr std::size_t kReadAhead = 64 * 1024;
}  // namespace

TlsStream::TlsStream(asio::ip::tcp::socket socket, asio::ssl::context& context, Role role,
                     const std::string& server_name)
    : socket_(std::move(socket)), server_name_(server_name) {
  IgnoreBrokenPipeSignal();  // OpenSSL writes the socket with write(2), without MSG_NOSIGNAL
  error_code ec;
  socket_.set_option(asio::ip::tcp::no_delay(true), ec);
  socket_.native_non_blocking(true, ec);
  ssl_ = SSL_new(context.native_handle());
  if (!ssl_) throw std::runtime_error("SSL_new failed");
  if (SSL_set_fd(ssl_, socket_.native_handle()) != 1) {
    SSL_free(ssl_);
    throw std::runtime_error("SSL_set_fd failed");
  }
  // Partial writes (Write loops over them); a retried write may come from a moved buffer; idle
  // connections give their record buffers back (thousands of held tunnels).
  SSL_set_mode(ssl_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                         SSL_MODE_RELEASE_BUFFERS);
  // A TCP FIN without close_notify is end of stream too: HTTP framing above us catches
  // truncated bodies, and many peers close that way.
  SSL_set_options(ssl_, SSL_OP_IGNORE_UNEXPECTED_EOF);
  SSL_set_read_ahead(ssl_, 1);
  SSL_set_default_read_buffer_len(ssl_, kReadAhead);
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
  if (ssl_) SSL_free(ssl_);  // the socket (and its descriptor) stays with socket_
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
  } else if (err == SSL_ERROR_SYSCALL && errno != 0) {
    const error_code sys(errno, boost::system::system_category());
    last_error_ = fmt::format("{}: {}", what, sys.message());
    ERR_clear_error();
    return sys;
  } else {
    last_error_ = fmt::format("{}: SSL error {}", what, err);
  }
  ERR_clear_error();
  if (code != 0) return error_code(static_cast<int>(code), asio::error::get_ssl_category());
  return asio::error::connection_aborted;
}

asio::awaitable<error_code> TlsStream::WaitOrFail(int ret, const char* what) {
  const int err = SSL_get_error(ssl_, ret);
  if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) co_return SslError(ret, what);
  error_code ec;
  co_await socket_.async_wait(err == SSL_ERROR_WANT_READ ? asio::ip::tcp::socket::wait_read
                                                         : asio::ip::tcp::socket::wait_write,
                              asio::redirect_error(asio::use_awaitable, ec));
  if (ec) last_error_ = fmt::format("{}: {}", what, ec.message());
  co_return ec;
}

asio::awaitable<error_code> TlsStream::Handshake() {
  for (;;) {
    ERR_clear_error();
    errno = 0;
    const int ret = SSL_do_handshake(ssl_);
    if (ret == 1) {
      handshake_done_ = true;
      co_return error_code{};
    }
    if (error_code ec = co_await WaitOrFail(ret, "handshake")) co_return ec;
  }
}

asio::awaitable<IoResult> TlsStream::ReadSome(asio::mutable_buffer buffer) {
  if (buffer.size() == 0) co_return IoResult{};
  for (;;) {
    ERR_clear_error();
    errno = 0;
    std::size_t n = 0;
    const int ret = SSL_read_ex(ssl_, buffer.data(), buffer.size(), &n);
    if (ret == 1) co_return IoResult{{}, n};
    if (SSL_get_error(ssl_, ret) == SSL_ERROR_ZERO_RETURN) {
      co_return IoResult{asio::error::eof, 0};
    }
    if (error_code ec = co_await WaitOrFail(ret, "read")) co_return IoResult{ec, 0};
  }
}

asio::awaitable<IoResult> TlsStream::Write(asio::const_buffer buffer) {
  const char* p = static_cast<const char*>(buffer.data());
  std::size_t left = buffer.size();
  std::size_t done = 0;
  while (left > 0) {
    ERR_clear_error();
    errno = 0;
    std::size_t n = 0;
    const int ret = SSL_write_ex(ssl_, p, left, &n);  // partial: at least one record
    if (ret == 1) {
      p += n;
      left -= n;
      done += n;
      continue;
    }
    if (error_code ec = co_await WaitOrFail(ret, "write")) co_return IoResult{ec, done};
  }
  co_return IoResult{{}, done};
}

asio::awaitable<error_code> TlsStream::ShutdownWrite() {
  for (;;) {
    ERR_clear_error();
    errno = 0;
    // 0: our close_notify is sent, the peer's not received yet (we go on reading); 1: both.
    const int ret = SSL_shutdown(ssl_);
    if (ret >= 0) co_return error_code{};
    if (error_code ec = co_await WaitOrFail(ret, "shutdown")) co_return ec;
  }
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
