#include "tunnelkit/stream/tls_stream.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <sys/socket.h>

#include <cerrno>

#include <fmt/format.h>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "tunnelkit/buffer_pool.hpp"

namespace tunnelkit {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {
// OpenSSL reads ahead into a buffer this large: one recv() takes several records, rather than
// one recv() for each record's header and another for its body.
constexpr std::size_t kReadAhead = 64 * 1024;

// Outgoing records gather in a buffer this large and leave in one send(): a 64 KiB write is
// five records, and a syscall and a TCP segment per record cost more kernel time than copying
// them once (docs/benchmarks.md, "TLS record batching"). The buffer comes from a per-thread
// pool only while it holds bytes, so idle connections keep none.
constexpr std::size_t kWriteBatch = 128 * 1024;

BufferPool& WriteBatches() {
  return ThreadBufferPool(kWriteBatch, 8);
}
}  // namespace

struct TlsStream::RecordBatch {
  explicit RecordBatch(int socket_fd) : fd(socket_fd) {}

  // Sends what is gathered. True once nothing is left (the buffer goes back to the pool);
  // false with errno set (EAGAIN: the socket is full).
  bool Send() {
    while (chunk && !chunk.empty()) {
      const auto bytes = chunk.readable();
      const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      ++sends;
      if (n < 0) {
        if (errno == EINTR) continue;
        return false;
      }
      chunk.Consume(static_cast<std::size_t>(n));
    }
    chunk = Chunk();
    return true;
  }

  // OpenSSL's write BIO. While TlsStream::Write runs (`gathering`), records are appended (as
  // much as fits; OpenSSL resumes partial writes) and a full buffer is sent first; otherwise
  // (handshake, reads, callers driving SSL_write themselves) they go straight to the socket,
  // after whatever was gathered.
  static int Write(BIO* bio, const char* data, int size) {
    auto* self = static_cast<RecordBatch*>(BIO_get_data(bio));
    BIO_clear_retry_flags(bio);
    if (size <= 0) return 0;
    if (!self->gathering) {
      ssize_t n = -1;
      if (self->Send()) {
        do {
          n = ::send(self->fd, data, static_cast<std::size_t>(size), MSG_NOSIGNAL | MSG_DONTWAIT);
          ++self->sends;
        } while (n < 0 && errno == EINTR);
      }
      if (n >= 0) return static_cast<int>(n);
      if (errno == EAGAIN || errno == EWOULDBLOCK) BIO_set_retry_write(bio);
      return -1;
    }
    if (!self->chunk) self->chunk = WriteBatches().Acquire();
    if (self->chunk.writable().empty()) {
      if (!self->Send()) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) BIO_set_retry_write(bio);
        return -1;
      }
      self->chunk = WriteBatches().Acquire();
    }
    const auto* bytes = reinterpret_cast<const std::uint8_t*>(data);
    return static_cast<int>(self->chunk.Append({bytes, static_cast<std::size_t>(size)}));
  }

  static long Control(BIO* bio, int cmd, long /*num*/, void* /*ptr*/) {
    auto* self = static_cast<RecordBatch*>(BIO_get_data(bio));
    switch (cmd) {
      case BIO_CTRL_FLUSH:
        BIO_clear_retry_flags(bio);
        if (self->Send()) return 1;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          BIO_set_retry_write(bio);
          return 0;
        }
        return -1;
      case BIO_CTRL_WPENDING:
        return self->chunk ? static_cast<long>(self->chunk.size()) : 0;
      case BIO_CTRL_DUP:
        return 1;
      default:
        return 0;
    }
  }

  static int Create(BIO* bio) {
    BIO_set_init(bio, 1);
    return 1;
  }

  static const BIO_METHOD* Method() {
    static BIO_METHOD* method = [] {
      BIO_METHOD* m =
          BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "tunnelkit record batch");
      BIO_meth_set_write(m, &RecordBatch::Write);
      BIO_meth_set_ctrl(m, &RecordBatch::Control);
      BIO_meth_set_create(m, &RecordBatch::Create);
      return m;
    }();
    return method;
  }

  int fd;
  Chunk chunk;
  bool gathering = false;
  std::uint64_t sends = 0;
};

TlsStream::TlsStream(asio::ip::tcp::socket socket, asio::ssl::context& context, Role role,
                     const std::string& server_name)
    : socket_(std::move(socket)), server_name_(server_name) {
  error_code ec;
  socket_.set_option(asio::ip::tcp::no_delay(true), ec);
  socket_.native_non_blocking(true, ec);
  out_ = std::make_unique<RecordBatch>(socket_.native_handle());
  ssl_ = SSL_new(context.native_handle());
  if (!ssl_) throw std::runtime_error("SSL_new failed");
  BIO* rbio = BIO_new_socket(socket_.native_handle(), BIO_NOCLOSE);
  BIO* wbio = BIO_new(RecordBatch::Method());
  if (!rbio || !wbio) {
    BIO_free(rbio);
    BIO_free(wbio);
    SSL_free(ssl_);
    throw std::runtime_error("BIO_new failed");
  }
  BIO_set_data(wbio, out_.get());
  SSL_set_bio(ssl_, rbio, wbio);
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
  // OpenSSL's state is read before anything else runs (other streams share the error queue).
  const int err = SSL_get_error(ssl_, ret);
  if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) co_return SslError(ret, what);
  // Wanting to write: gathered records could not go out (sending them is the wait), or a
  // record written straight through (handshake, alerts) met a full socket.
  if (err == SSL_ERROR_WANT_WRITE && out_->chunk && !out_->chunk.empty()) {
    co_return co_await Flush();
  }
  // Records made before a read stopped (a key update's answer) go out if the socket takes
  // them now. A reader never waits for the socket to drain: the peer may be waiting for us
  // to read before it reads again (a concurrent writer sends the rest).
  if (err == SSL_ERROR_WANT_READ) out_->Send();
  error_code ec;
  co_await socket_.async_wait(err == SSL_ERROR_WANT_READ ? asio::ip::tcp::socket::wait_read
                                                         : asio::ip::tcp::socket::wait_write,
                              asio::redirect_error(asio::use_awaitable, ec));
  if (ec) last_error_ = fmt::format("{}: {}", what, ec.message());
  co_return ec;
}

asio::awaitable<error_code> TlsStream::Flush() {
  for (;;) {
    if (out_->Send()) co_return error_code{};
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      const error_code ec(errno, boost::system::system_category());
      last_error_ = fmt::format("write: {}", ec.message());
      co_return ec;
    }
    error_code ec;
    co_await socket_.async_wait(asio::ip::tcp::socket::wait_write,
                                asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return ec;
  }
}

asio::awaitable<error_code> TlsStream::Handshake() {
  for (;;) {
    ERR_clear_error();
    errno = 0;
    const int ret = SSL_do_handshake(ssl_);
    if (ret == 1) {
      handshake_done_ = true;
      co_return co_await Flush();
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
    if (ret == 1) {
      // One call returns one record: take the others OpenSSL already holds (decrypted or read
      // ahead) while there is room, rather than a trip through the caller for each 16 KiB.
      auto* out = static_cast<unsigned char*>(buffer.data());
      while (n < buffer.size() && (SSL_pending(ssl_) > 0 || SSL_has_pending(ssl_) == 1)) {
        std::size_t more = 0;
        if (SSL_read_ex(ssl_, out + n, buffer.size() - n, &more) != 1) {
          ERR_clear_error();  // the next read meets it again (or the socket was empty)
          break;
        }
        n += more;
      }
      // Reading can make records to send (a key update's answer): they go if the socket takes
      // them now (see WaitOrFail).
      out_->Send();
      co_return IoResult{{}, n};
    }
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
  out_->gathering = true;
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
    if (error_code ec = co_await WaitOrFail(ret, "write")) {
      out_->gathering = false;
      co_return IoResult{ec, done};
    }
  }
  out_->gathering = false;
  if (error_code ec = co_await Flush()) co_return IoResult{ec, done};
  co_return IoResult{{}, done};
}

asio::awaitable<error_code> TlsStream::ShutdownWrite() {
  for (;;) {
    ERR_clear_error();
    errno = 0;
    // 0: our close_notify is sent, the peer's not received yet (we go on reading); 1: both.
    const int ret = SSL_shutdown(ssl_);
    if (ret >= 0) co_return co_await Flush();
    if (error_code ec = co_await WaitOrFail(ret, "shutdown")) co_return ec;
  }
}

void TlsStream::Reset() {
  error_code ec;
  if (socket_.is_open()) socket_.set_option(asio::socket_base::linger(true, 0), ec);
  socket_.close(ec);
  // OpenSSL's BIOs hold the descriptor number, which the kernel hands out again: later calls
  // must fail, not read or write whichever socket got the number next.
  out_->fd = -1;
  if (BIO* rbio = SSL_get_rbio(ssl_)) BIO_set_fd(rbio, -1, BIO_NOCLOSE);
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

std::uint64_t TlsStream::socket_writes() const {
  return out_->sends;
}

std::string TlsStream::Version() const {
  return SSL_get_version(ssl_);
}

}  // namespace tunnelkit
