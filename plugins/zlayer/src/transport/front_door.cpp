#include "transport/front_door.hpp"

#include <openssl/ssl.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "transport/upgrade_head.hpp"
#include "tunnelkit/net/url.hpp"
#include "tunnelkit/stream/deadline.hpp"
#include "tunnelkit/stream/socket_stream.hpp"
#include "tunnelkit/stream/splice.hpp"
#include "tunnelkit/stream/tls_context.hpp"
#include "tunnelkit/stream/tls_stream.hpp"

namespace tunnelkit::zlayer::transport {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;

namespace {

// Reads the upgrade request's head, and nothing we cannot give back: up to its blank line.
// The head's length with the blank line; 0 when the peer left, timed out or sent more than
// kMaxHead (logged).
asio::awaitable<std::size_t> ReadUpgradeHead(Stream& stream, const Deadline& deadline,
                                             const std::string& peer, spdlog::logger& log,
                                             std::string& head) {
  std::size_t head_end = std::string::npos;
  std::array<char, 1024> chunk;
  while (head_end == std::string::npos) {
    const auto r = co_await stream.ReadSome(asio::buffer(chunk));
    if (r.ec) {
      log.info("connection from {} closed before its upgrade request{}", peer,
               deadline.fired() ? " (timed out)" : "");
      co_return 0;
    }
    const std::size_t from = head.size() >= 3 ? head.size() - 3 : 0;
    head.append(chunk.data(), r.bytes);
    head_end = head.find("\r\n\r\n", from);
    if (head_end == std::string::npos && head.size() > FrontDoor::kMaxHead) {
      log.warn("connection from {}: upgrade request longer than {} bytes; closing", peer,
               FrontDoor::kMaxHead);
      co_return 0;
    }
  }
  co_return head_end + 4;
}

}  // namespace

FrontDoor::FrontDoor(asio::io_context& io, std::shared_ptr<spdlog::logger> logger)
    : io_(io), log_(std::move(logger)), listener_(io.get_executor()) {}

FrontDoor::~FrontDoor() {
  *alive_ = false;
  Stop();
}

bool FrontDoor::Start(const FrontDoorOptions& options, DataHandler on_data,
                      ControlHandler on_control, std::string& error) {
  options_ = options;
  on_data_ = std::move(on_data);
  on_control_ = std::move(on_control);
  if (!options_.tls_cert.empty() || !options_.tls_key.empty()) {
    if (options_.tls_cert.empty() || options_.tls_key.empty()) {
      error = "TLS needs both a certificate and a key";
      return false;
    }
    try {
      tls_context_ = MakeTlsServerContext({options_.tls_cert, options_.tls_key, "", {}});
      // No TLS 1.3 session tickets: agents never resume, and each ticket costs both sides
      // memory per connection (a parsed session) and the server a ticket encryption.
      SSL_CTX_set_num_tickets(tls_context_->native_handle(), 0);
    } catch (const std::exception& e) {
      error = e.what();
      return false;
    }
  }
  error_code ec;
  tcp::endpoint endpoint;
  const std::string& host = options_.host;
  const auto port = static_cast<std::uint16_t>(options_.port);
  if (host.empty() || host == "0.0.0.0") {
    endpoint = tcp::endpoint(tcp::v4(), port);
  } else {
    const auto address = asio::ip::make_address(host, ec);
    if (!ec) {
      endpoint = tcp::endpoint(address, port);
    } else {
      tcp::resolver resolver(io_);
      const auto results = resolver.resolve(host, std::to_string(port), ec);
      if (ec || results.empty()) {
        error = "cannot resolve listen address '" + host + "'";
        return false;
      }
      endpoint = results.begin()->endpoint();
    }
  }
  if (!listener_.Open(endpoint, error)) return false;
  port_ = listener_.port();
  unauthenticated_ = net::ConnectionLimiter(options_.unauthenticated);
  net::ListenerOptions listener_options;
  listener_options.name = "zlayer listener";
  listener_options.logger = log_;
  // The listener closes with this object (Stop, destructor): the handler never outlives it.
  listener_.Start([this](tcp::socket socket) { OnAccept(std::move(socket)); }, listener_options);
  return true;
}

void FrontDoor::Stop() {
  listener_.Close();
}

void FrontDoor::OnAccept(tcp::socket socket) {
  error_code ec;
  const auto remote = socket.remote_endpoint(ec);
  if (ec) {
    socket.close(ec);
    return;
  }
  const auto address = remote.address();
  if (options_.admit && !options_.admit(address)) {
    socket.close(ec);
    return;
  }
  net::ConnectionLimiter::Refusal why = net::ConnectionLimiter::Refusal::kNone;
  auto lease = unauthenticated_.TryAcquire(address, &why);
  if (!lease) {
    refusal_log_.Log(*log_, spdlog::level::warn,
                     "connection from {} closed: {} connections are in their TLS handshake or "
                     "upgrade{}",
                     address.to_string(),
                     why == net::ConnectionLimiter::Refusal::kTotal
                         ? unauthenticated_.active()
                         : unauthenticated_.active(address),
                     why == net::ConnectionLimiter::Refusal::kTotal ? "" : " from this source");
    socket.close(ec);
    return;
  }
  asio::co_spawn(io_, Serve(std::move(socket), std::move(*lease)), asio::detached);
}

asio::awaitable<void> FrontDoor::Serve(tcp::socket socket,
                                       net::ConnectionLimiter::Lease unauthenticated) {
  auto alive = alive_;
  const auto executor = socket.get_executor();
  error_code ec;
  const auto remote = socket.remote_endpoint(ec);
  const std::string peer = ec ? std::string("unknown") : net::EndpointText(remote);
  auto log = log_;

  std::unique_ptr<TlsStream> tls;
  std::unique_ptr<TcpStream> tcp;
  Stream* stream = nullptr;
  Deadline deadline(executor);
  if (tls_context_) {
    tls = std::make_unique<TlsStream>(std::move(socket), *tls_context_, TlsStream::Role::kServer);
    stream = tls.get();
    deadline.Arm(options_.head_timeout, [stream] { stream->Reset(); });
    ec = co_await tls->Handshake();
    if (ec) {
      log->info("connection from {}: TLS handshake failed: {}", peer,
                deadline.fired() ? std::string("timed out")
                                 : (tls->LastError().empty() ? ec.message() : tls->LastError()));
      co_return;
    }
  } else {
    tcp = std::make_unique<TcpStream>(std::move(socket));
    stream = tcp.get();
    deadline.Arm(options_.head_timeout, [stream] { stream->Reset(); });
  }

  std::string head;
  const std::size_t head_end = co_await ReadUpgradeHead(*stream, deadline, peer, *log, head);
  if (head_end == 0 || !*alive) co_return;

  UpgradeRequest request;
  const auto data_kind =
      ParseDataUpgrade(std::string_view(head).substr(0, head_end), kMaxHead, request);
  if (data_kind) {
    deadline.Cancel();
    if (head.size() > head_end) {
      log->warn("data connection from {} sent bytes before its upgrade completed; closing", peer);
      co_return;
    }
    // A data upgrade of a live link leaves its source's pre-auth budget here: an agent opens
    // one per public connection, all from its one address (the link's own cap bounds them).
    DataLinkAdmission admission;
    if (options_.admit_data_link) {
      const auto value = request[kDataLinkHeader];
      const auto credential = ParseDataLinkCredential(std::string_view(value.data(), value.size()));
      admission =
          options_.admit_data_link(credential ? &*credential : nullptr, remote.address(), peer);
      if (!*alive) co_return;
    }
    if (admission.verdict == DataLinkAdmission::Verdict::kRefused) co_return;  // logged there
    if (admission.verdict == DataLinkAdmission::Verdict::kAdmitted) unauthenticated.Release();
    std::string error;
    tcp::socket plain(executor);
    if (tcp) plain = std::move(tcp->socket());
    auto data = co_await AcceptDataSocket(std::move(plain), std::move(tls), request, peer,
                                          options_.head_timeout, *data_kind, error);
    if (!data) {
      log->info("data connection from {}: {}", peer, error);
      co_return;
    }
    unauthenticated.Release();
    if (*alive && on_data_) on_data_(std::move(data), std::move(admission));
    co_return;
  }

  // A control connection (or something else: libwebsockets answers it as upstream does).
  co_await ServeControl(std::move(head), peer, std::move(tcp), std::move(tls), deadline,
                        unauthenticated);
}

asio::awaitable<void> FrontDoor::ServeControl(std::string head, std::string peer,
                                              std::unique_ptr<TcpStream> tcp,
                                              std::unique_ptr<TlsStream> tls, Deadline& deadline,
                                              net::ConnectionLimiter::Lease& unauthenticated) {
  error_code ec;
  if (head.size() > kMaxControlHead) {
    log_->warn(
        "connection from {}: request of {} bytes is too long for the control channel; "
        "closing",
        peer, head.size());
    co_return;
  }
  deadline.Cancel();
  unauthenticated.Release();  // the control channel counts it until its Auth
  if (tcp) {
    const int fd = tcp->socket().release(ec);
    if (ec) {
      log_->warn("connection from {}: cannot hand the socket over: {}", peer, ec.message());
      co_return;
    }
    on_control_(fd, std::move(head), peer);
    co_return;
  }
  // wss: libwebsockets gets one end of a socketpair; the TLS stream is relayed to the other.
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    log_->warn("connection from {}: socketpair failed; closing", peer);
    co_return;
  }
  asio::local::stream_protocol::socket ours(io_.get_executor());
  ours.assign(asio::local::stream_protocol(), fds[0], ec);
  if (ec) {
    ::close(fds[0]);
    ::close(fds[1]);
    co_return;
  }
  on_control_(fds[1], std::move(head), peer);
  UnixStream relay(std::move(ours));
  co_await Splice(*tls, relay, 16 * 1024);
}

}  // namespace tunnelkit::zlayer::transport
