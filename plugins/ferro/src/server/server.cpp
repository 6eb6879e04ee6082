#include "server/server.hpp"

#include <algorithm>
#include <array>
#include <stdexcept>

#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "mux/connection.hpp"
#include "server/http_head.hpp"
#include "server/http_relay.hpp"
#include "session/handshake.hpp"
#include "tunnelkit/net/url.hpp"
#include "tunnelkit/stream/socket_stream.hpp"
#include "tunnelkit/stream/splice.hpp"
#include "tunnelkit/stream/tls_stream.hpp"

namespace tunnelkit::ferro {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

std::uint64_t UnixMillis() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

void Open(net::Listener& listener, const std::string& address, const char* what) {
  std::string error;
  if (!listener.Open(ParseListenAddress(address), error)) {
    throw std::runtime_error(std::string(what) + ": " + error);
  }
}

std::optional<asio::ip::address> RemoteAddress(const tcp::socket& socket) {
  boost::system::error_code ec;
  const auto remote = socket.remote_endpoint(ec);
  if (ec) return std::nullopt;
  return remote.address();
}

// The answer to a public HTTP client over the connection cap: a fixed 503, written without
// reading the request (what already arrived is drained so the close does not reset the reply
// away), the connection closed within a second whatever the client does.
asio::awaitable<void> RefuseBusy(tcp::socket socket,
                                 [[maybe_unused]] net::ConnectionLimiter::Lease lease) {
  static constexpr std::string_view kBusy =
      "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
      "Content-Length: 34\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
      "Too many connections, retry later\n";
  asio::steady_timer timer(socket.get_executor());
  timer.expires_after(std::chrono::seconds(1));
  timer.async_wait([&socket](const boost::system::error_code& e) {
    if (!e) {
      boost::system::error_code ignored;
      socket.close(ignored);
    }
  });
  boost::system::error_code ec;
  co_await asio::async_write(socket, asio::buffer(kBusy),
                             asio::redirect_error(asio::use_awaitable, ec));
  if (!ec) socket.shutdown(tcp::socket::shutdown_send, ec);
  char sink[2048];
  for (int i = 0; i < 8 && !ec; ++i) {
    co_await socket.async_read_some(asio::buffer(sink),
                                    asio::redirect_error(asio::use_awaitable, ec));
  }
  timer.cancel();
  socket.close(ec);
}

// Holds `lease` (a public connection's slot) for as long as `work` runs.
asio::awaitable<void> HoldingLease([[maybe_unused]] net::ConnectionLimiter::Lease lease,
                                   asio::awaitable<void> work) {
  co_await std::move(work);
}

// Appends what the public client has sent to `buffer`, read straight into its spare room (at
// least kRequestRead bytes, at most kMaxRequestRead). A keep-alive connection waiting for its
// next request keeps that much, nothing more. (Waiting for readability and then asking the
// kernel how much is there cost two more syscalls per request: asio re-arms epoll on every
// async_wait, and FIONREAD.)
constexpr std::size_t kRequestRead = 1024;
constexpr std::size_t kMaxRequestRead = 16 * 1024;
asio::awaitable<boost::system::error_code> ReadMore(tcp::socket& socket, std::string& buffer) {
  const std::size_t old = buffer.size();
  const std::size_t room =
      std::clamp<std::size_t>(buffer.capacity() - old, kRequestRead, kMaxRequestRead);
  buffer.resize(old + room);
  boost::system::error_code ec;
  const std::size_t n = co_await socket.async_read_some(
      asio::buffer(buffer.data() + old, room), asio::redirect_error(asio::use_awaitable, ec));
  buffer.resize(old + n);
  co_return ec;
}

}  // namespace

tcp::endpoint ParseListenAddress(const std::string& text) {
  std::string host;
  std::string port;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      throw std::invalid_argument("address '" + text + "' is not [IPv6]:PORT");
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string::npos)
      throw std::invalid_argument("address '" + text + "' has no :PORT");
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  if (host.empty() || host == "*") host = "0.0.0.0";
  if (host == "localhost") host = "127.0.0.1";
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(host, ec);
  if (ec)
    throw std::invalid_argument("address '" + text + "': '" + host + "' is not an IP address");
  int number = -1;
  try {
    std::size_t used = 0;
    number = std::stoi(port, &used);
    if (used != port.size()) number = -1;
  } catch (const std::exception&) {
  }
  if (number < 0 || number > 65535) {
    throw std::invalid_argument("address '" + text + "': port '" + port + "' is not 0..65535");
  }
  return {address, static_cast<unsigned short>(number)};
}

FerroServer::FerroServer(asio::io_context& io, ServerSettings settings,
                         std::shared_ptr<spdlog::logger> logger)
    : io_(io),
      settings_(std::move(settings)),
      logger_(std::move(logger)),
      control_listener_(io.get_executor()),
      http_listener_(io.get_executor()),
      tcp_listener_(io.get_executor()),
      public_limiter_(settings_.limits.public_connections),
      preauth_limiter_(settings_.limits.unauthenticated),
      busy_replies_({64, 0}),
      auth_failures_(settings_.limits.auth_failures),
      auth_failure_log_(std::chrono::seconds(5)),
      auth_refusal_log_(std::chrono::seconds(5)),
      preauth_refusal_log_(std::chrono::seconds(5)),
      public_refusal_log_(std::chrono::seconds(5)),
      sweep_timer_(io) {}

FerroServer::~FerroServer() = default;

void FerroServer::Start() {
  if (settings_.tls) {
    TlsServerOptions options = *settings_.tls;
    options.tls13_only = true;
    tls_ = MakeTlsServerContext(options);
  }
  if (const auto issues = net::CheckServerLimits(settings_.limits, "ferro."); !issues.empty()) {
    throw std::invalid_argument(issues.front().field + ": " + issues.front().reason);
  }
  Open(control_listener_, settings_.listen, "tunnel clients");
  if (!settings_.http.empty()) Open(http_listener_, settings_.http, "HTTP ingress");
  if (!settings_.tcp.empty()) Open(tcp_listener_, settings_.tcp, "TCP ingress");
  auto self = shared_from_this();
  // The handlers hold the server weakly: the listeners close in Stop or with the server.
  std::weak_ptr<FerroServer> weak = self;
  logger_->info("listening for tunnel clients on {} ({}{})", net::EndpointText(control_endpoint()),
                tls_ ? "TLS 1.3" : "plain TCP",
                settings_.tls && !settings_.tls->client_ca_file.empty()
                    ? ", client certificates required"
                    : "");
  net::ListenerOptions options;
  options.logger = logger_;
  options.name = "control listener";
  control_listener_.Start(
      [weak](tcp::socket socket) {
        if (auto server = weak.lock()) server->AcceptControl(std::move(socket));
      },
      options);
  if (http_listener_.is_open()) {
    logger_->info("HTTP ingress on {}", net::EndpointText(http_endpoint()));
    options.name = "HTTP ingress";
    http_listener_.Start(
        [weak](tcp::socket socket) {
          auto server = weak.lock();
          if (!server) return;
          auto lease = server->AdmitPublic(socket, true);
          if (!lease) return;
          asio::co_spawn(server->io_,
                         HoldingLease(std::move(*lease), server->HandleHttp(std::move(socket))),
                         asio::detached);
        },
        options);
  }
  if (tcp_listener_.is_open()) {
    logger_->info("TCP ingress on {}", net::EndpointText(tcp_endpoint()));
    options.name = "TCP ingress";
    tcp_listener_.Start(
        [weak](tcp::socket socket) {
          auto server = weak.lock();
          if (!server) return;
          auto lease = server->AdmitPublic(socket, false);
          if (!lease) return;
          asio::co_spawn(server->io_,
                         HoldingLease(std::move(*lease), server->HandleTcp(std::move(socket))),
                         asio::detached);
        },
        options);
  }
  asio::co_spawn(
      io_, [self] { return self->SweepLoop(); }, asio::detached);
}

std::uint64_t FerroServer::spliced_bytes() const {
  std::uint64_t total = 0;
  for (const auto& session : sessions_) {
    if (session->connection) total += session->connection->spliced_bytes();
  }
  return total;
}

std::size_t FerroServer::stream_count() const {
  std::size_t total = 0;
  for (const auto& session : sessions_) {
    if (session->connection) total += session->connection->stream_count();
  }
  return total;
}

void FerroServer::Stop() {
  if (stopped_) return;
  stopped_ = true;
  control_listener_.Close();
  http_listener_.Close();
  tcp_listener_.Close();
  sweep_timer_.cancel();
  auto sessions = sessions_;
  // A session whose acknowledgement is still being written has no connection yet (its
  // handshake sees stopped_ and unregisters it).
  for (auto& session : sessions) {
    if (session->connection) session->connection->Close("server stopping");
  }
}

tcp::endpoint FerroServer::control_endpoint() const {
  return control_listener_.local_endpoint();
}
tcp::endpoint FerroServer::http_endpoint() const {
  return http_listener_.local_endpoint();
}
tcp::endpoint FerroServer::tcp_endpoint() const {
  return tcp_listener_.local_endpoint();
}

void FerroServer::AcceptControl(tcp::socket socket) {
  boost::system::error_code ec;
  const auto address = RemoteAddress(socket);
  if (!address) {
    socket.close(ec);
    return;
  }
  // A source that spent its authentication failures is closed before anything is read.
  if (!auth_failures_.Allowed(*address)) {
    auth_failures_.CountRefusal();
    auth_refusal_log_.Log(*logger_, spdlog::level::warn,
                          "control connection from {} closed: too many authentication failures "
                          "from {} ({} refused so far)",
                          address->to_string(), net::SourceKeyText(net::SourceKeyOf(*address)),
                          auth_failures_.refused());
    socket.close(ec);
    return;
  }
  net::ConnectionLimiter::Refusal why = net::ConnectionLimiter::Refusal::kNone;
  auto lease = preauth_limiter_.TryAcquire(*address, &why);
  if (!lease) {
    preauth_refusal_log_.Log(
        *logger_, spdlog::level::warn,
        "control connection from {} closed: {} connections are waiting for their handshake{}",
        address->to_string(),
        why == net::ConnectionLimiter::Refusal::kTotal ? preauth_limiter_.active()
                                                       : preauth_limiter_.active(*address),
        why == net::ConnectionLimiter::Refusal::kTotal ? "" : " from this source");
    socket.close(ec);
    return;
  }
  asio::co_spawn(io_, HandleControl(std::move(socket), std::move(*lease)), asio::detached);
}

std::optional<net::ConnectionLimiter::Lease> FerroServer::AdmitPublic(tcp::socket& socket,
                                                                      bool http) {
  boost::system::error_code ec;
  const auto address = RemoteAddress(socket);
  if (!address) {
    socket.close(ec);
    return std::nullopt;
  }
  net::ConnectionLimiter::Refusal why = net::ConnectionLimiter::Refusal::kNone;
  auto lease = public_limiter_.TryAcquire(*address, &why);
  if (lease) return lease;
  public_refusal_log_.Log(
      *logger_, spdlog::level::warn, "{} connection from {} refused: {} ({} refused so far)",
      http ? "HTTP" : "TCP", address->to_string(),
      why == net::ConnectionLimiter::Refusal::kTotal ? "at max_public_connections"
                                                     : "at max_public_connections_per_source",
      public_limiter_.refused());
  auto reply = http ? busy_replies_.TryAcquire(*address) : std::nullopt;
  if (reply) {
    asio::co_spawn(io_, RefuseBusy(std::move(socket), std::move(*reply)), asio::detached);
  } else {
    socket.close(ec);
  }
  return std::nullopt;
}

asio::awaitable<void> FerroServer::HandleControl(tcp::socket socket,
                                                 net::ConnectionLimiter::Lease unauthenticated) {
  auto self = shared_from_this();
  const auto source = RemoteAddress(socket);
  boost::system::error_code ec;
  socket.set_option(tcp::no_delay(true), ec);
  socket.set_option(asio::socket_base::keep_alive(true), ec);
  const std::string peer = DescribeTcpEndpoints(socket);
  std::unique_ptr<Stream> transport;
  if (tls_) {
    auto tls = std::make_unique<TlsStream>(std::move(socket), *tls_, TlsStream::Role::kServer);
    asio::steady_timer timer(io_);
    timer.expires_after(settings_.handshake_timeout);
    timer.async_wait([&tls](const boost::system::error_code& e) {
      if (!e) tls->Reset();
    });
    ec = co_await tls->Handshake();
    timer.cancel();
    if (ec) {
      logger_->warn("TLS handshake with {} failed: {}", peer,
                    tls->LastError().empty() ? ec.message() : tls->LastError());
      co_return;
    }
    transport = std::move(tls);
  } else {
    transport = std::make_unique<TcpStream>(std::move(socket));
  }

  // Before the token is checked, frames are small (a Handshake needs a few KiB).
  FrameDecoder decoder(kMaxHandshakeFrame);
  ReadFrameResult first = co_await ReadOneFrame(*transport, decoder, settings_.handshake_timeout);
  if (!first.frame) {
    logger_->warn("control connection {}: handshake failed: {}", peer, first.error);
    transport->Reset();
    co_return;
  }
  auto* hello = std::get_if<Handshake>(&*first.frame);
  if (!hello) {
    logger_->warn("control connection {}: first frame was {}, not Handshake", peer,
                  FrameName(*first.frame));
    transport->Reset();
    co_return;
  }
  // (Frames are named locals before co_await: g++ 12 mishandles some temporaries there.)
  Frame refusal = HandshakeAck{Uuid{}, HandshakeStatus::kInvalidToken, 0, {}};
  auto& refusal_ack = std::get<HandshakeAck>(refusal);
  // The token is never logged, not even in part.
  if (!IsWellFormedToken(hello->token) || !TokensEqual(hello->token, settings_.token)) {
    const bool over = source && !auth_failures_.Spend(*source);
    auth_failure_log_.Log(*logger_, spdlog::level::warn,
                          "control connection {}: rejected: invalid token{}", peer,
                          over ? " (source over its authentication failure budget)" : "");
    co_await WriteOneFrame(*transport, refusal);
    transport->Reset();
    co_return;
  }
  const auto version = NegotiateVersion(hello->min_version, hello->max_version);
  if (!version) {
    logger_->warn("control connection {}: rejected: versions {}..{} do not include {}", peer,
                  hello->min_version, hello->max_version, kProtocolVersion);
    refusal_ack.status = HandshakeStatus::kVersionMismatch;
    co_await WriteOneFrame(*transport, refusal);
    transport->Reset();
    co_return;
  }
  auto session = std::make_shared<Session>();
  session->session_id = RandomUuidV4();
  session->tunnel_id = hello->tunnel_id.value_or(UuidToString(session->session_id));
  session->tcp = HasCapability(hello->capabilities, kCapabilityTcp);
  if (stopped_) co_return;
  if (by_tunnel_id_.count(session->tunnel_id)) {
    logger_->warn("control connection {}: rejected: tunnel id '{}' is already registered", peer,
                  session->tunnel_id);
    refusal_ack.status = HandshakeStatus::kTunnelIdTaken;
    refusal_ack.session_id = session->session_id;
    co_await WriteOneFrame(*transport, refusal);
    transport->Reset();
    co_return;
  }
  unauthenticated.Release();
  decoder.set_max_frame_size(kDefaultMaxFrameSize);
  const bool flow = HasCapability(hello->capabilities, kCapabilityFlow);
  std::vector<std::string> capabilities{std::string(kCapabilityBasic)};
  if (flow) capabilities.emplace_back(kCapabilityFlow);
  // Registered before the acknowledgement goes out, so a racing duplicate sees it.
  by_tunnel_id_[session->tunnel_id] = session;
  recently_gone_.erase(session->tunnel_id);
  sessions_.push_back(session);
  Frame accept =
      HandshakeAck{session->session_id, HandshakeStatus::kSuccess, *version, capabilities};
  ec = co_await WriteOneFrame(*transport, accept);
  if (ec || stopped_) {
    Unregister(session, ec ? "acknowledgement failed: " + ec.message() : "server stopping");
    co_return;
  }
  Connection::Options options;
  options.is_server = true;
  options.flow_control = flow;
  options.kernel_splice = settings_.kernel_splice;
  // What one public connection can make this process hold of a response its reader does not
  // take (the stream's receive window, which grows while the reader keeps up).
  options.max_stream_window =
      std::max<std::uint32_t>(settings_.max_stream_window, options.stream_window);
  auto connection =
      std::make_shared<Connection>(std::move(transport), std::move(decoder), options, logger_);
  session->connection = connection;
  std::weak_ptr<Connection> weak = connection;
  std::weak_ptr<FerroServer> weak_server = self;
  connection->Start(
      [this](std::shared_ptr<MuxStream> stream) {
        logger_->warn("client-opened stream {} refused: only the server opens streams",
                      stream->id());
        stream->Reset();
      },
      [weak](const Frame& frame) {
        auto c = weak.lock();
        if (!c) return;
        if (std::holds_alternative<Heartbeat>(frame)) {
          c->Send(HeartbeatAck{UnixMillis()}, StreamPriority::kCritical);
        }
      },
      [weak_server, session](const std::string& reason) {
        if (auto server = weak_server.lock()) server->Unregister(session, reason);
      });
  logger_->info("tunnel registered: {} (session {}, {}, from {}{}{})", session->tunnel_id,
                UuidToString(session->session_id), tls_ ? "TLS" : "TCP", peer,
                session->tcp ? ", tcp" : "", flow ? ", tk-flow" : "");
}

void FerroServer::Unregister(const std::shared_ptr<Session>& session, const std::string& reason) {
  auto it = by_tunnel_id_.find(session->tunnel_id);
  if (it != by_tunnel_id_.end() && it->second == session) {
    by_tunnel_id_.erase(it);
    // Remembered for a while: requests for it meanwhile get 503 (its client is expected back),
    // not 404. Bounded: past the cap, the oldest entry goes.
    if (!stopped_ && settings_.reconnect_grace.count() > 0) {
      if (recently_gone_.size() >= kMaxRecentlyGone) {
        recently_gone_.erase(
            std::min_element(recently_gone_.begin(), recently_gone_.end(),
                             [](const auto& a, const auto& b) { return a.second < b.second; }));
      }
      recently_gone_[session->tunnel_id] =
          std::chrono::steady_clock::now() + settings_.reconnect_grace;
    }
  }
  sessions_.remove(session);
  logger_->info("tunnel {} closed: {}", session->tunnel_id, reason);
}

std::shared_ptr<FerroServer::Session> FerroServer::FindByHost(const std::string& host) const {
  auto it = by_tunnel_id_.find(host);
  if (it != by_tunnel_id_.end()) return it->second;
  if (!settings_.domain.empty()) {
    const std::string suffix = "." + NormalizeHost(settings_.domain);
    if (host.size() > suffix.size() &&
        host.compare(host.size() - suffix.size(), suffix.size(), suffix) == 0) {
      it = by_tunnel_id_.find(host.substr(0, host.size() - suffix.size()));
      if (it != by_tunnel_id_.end()) return it->second;
    }
  }
  return nullptr;
}

bool FerroServer::RecentlyGone(const std::string& host) const {
  const auto now = std::chrono::steady_clock::now();
  auto gone = [&](const std::string& id) {
    auto it = recently_gone_.find(id);
    return it != recently_gone_.end() && it->second > now;
  };
  if (gone(host)) return true;
  if (!settings_.domain.empty()) {
    const std::string suffix = "." + NormalizeHost(settings_.domain);
    if (host.size() > suffix.size() &&
        host.compare(host.size() - suffix.size(), suffix.size(), suffix) == 0) {
      return gone(host.substr(0, host.size() - suffix.size()));
    }
  }
  return false;
}

std::shared_ptr<FerroServer::Session> FerroServer::FindTcpSession() const {
  for (const auto& session : sessions_) {
    if (session->tcp && session->connection && !session->connection->closed()) return session;
  }
  return nullptr;
}

asio::awaitable<void> FerroServer::HandleHttp(tcp::socket socket) {
  auto self = shared_from_this();
  boost::system::error_code ec;
  socket.set_option(tcp::no_delay(true), ec);
  // For X-Forwarded-For; asked once, not for every request of a keep-alive connection.
  std::string client_address;
  boost::system::error_code remote_ec;
  if (const auto remote = socket.remote_endpoint(remote_ec); !remote_ec) {
    client_address = remote.address().to_string();
  }
  // Bytes from the public client not sent on yet (a pipelined next request, say).
  std::string buffer;
  // One stream per request (specs/ferrotunnel.md); the public connection stays open between
  // requests when the request and response allow it.
  for (;;) {
    std::size_t head_end = 0;
    {
      // A client that does not finish its request head in time (or stays idle that long
      // between requests) is dropped.
      asio::steady_timer timer(io_);
      timer.expires_after(std::chrono::seconds(30));
      timer.async_wait([&socket](const boost::system::error_code& e) {
        if (!e) {
          boost::system::error_code ignored;
          socket.close(ignored);
        }
      });
      while ((head_end = FindHeadEnd(buffer)) == 0 &&
             buffer.size() <= kMaxRequestHead - kAddedHeadBytes) {
        ec = co_await ReadMore(socket, buffer);
        if (ec) break;
      }
      timer.cancel();
    }
    if (ec) co_return;
    if (head_end == 0) {
      co_await RespondAndClose(socket, 431, "Request Header Fields Too Large",
                               "Request header too large");
      co_return;
    }
    std::string error;
    auto head = ParseIncomingRequestHead(std::string_view(buffer).substr(0, head_end), error);
    const BodyFraming body = head ? head->Body() : BodyFraming{};
    if (head && body.kind == BodyFraming::Kind::kInvalid) {
      error = "ambiguous request body length (Content-Length / Transfer-Encoding)";
      head.reset();
    }
    if (!head) {
      const std::string message = "Bad request: " + error;
      co_await RespondAndClose(socket, 400, "Bad Request", message);
      co_return;
    }
    if (head->Path() == "/health") {
      co_await RespondAndClose(socket, 200, "OK", "OK");
      co_return;
    }
    const std::string host = NormalizeHost(head->Header("host"));
    auto session = FindByHost(host);
    if (!session || !session->connection || session->connection->closed()) {
      // A tunnel whose client was here a moment ago is expected back: 503, try again.
      if ((session && session->connection) || RecentlyGone(host)) {
        co_await RespondAndClose(socket, 503, "Service Unavailable",
                                 "Tunnel client is reconnecting", "Retry-After: 1\r\n");
      } else {
        co_await RespondAndClose(socket, 404, "Not Found", "Tunnel not found");
      }
      co_return;
    }
    const bool websocket = head->IsWebSocketUpgrade();
    const bool keep_alive = !websocket && head->CanKeepAlive();
    // An upgrade or CONNECT may turn the exchange into a two-way byte stream: spliced.
    const bool two_way = websocket || !head->Header("upgrade").empty() || head->method == "CONNECT";
    auto stream = session->connection->Open(websocket ? Protocol::kWebSocket : Protocol::kHttp,
                                            StreamPriority::kNormal);
    std::string request = SerializeRequestHead(*head, !websocket, client_address);
    if (two_way) {
      request.append(buffer, head_end, std::string::npos);
      buffer = std::string();
    }
    IoResult w = co_await stream->Write(asio::buffer(request));
    if (w.ec) {
      stream->Reset();
      co_await RespondAndClose(socket, 502, "Bad Gateway", "Tunnel handshake failed");
      co_return;
    }
    if (two_way) {
      TcpStream public_side(std::move(socket));
      SpliceOptions options;
      if (!websocket) options.linger = std::chrono::seconds(5);
      co_await Splice(public_side, *stream, options);
      co_return;
    }
    const std::string method = head->method;
    head.reset();
    // Keep-alive requests have no body: what follows the head is the next request. Otherwise
    // what follows is the body's start, and the public connection ends with this exchange.
    std::string body_start;
    if (keep_alive) {
      buffer.erase(0, head_end);
    } else {
      body_start = buffer.substr(head_end);
      buffer = std::string();
    }
    ExchangeRequest exchange;
    exchange.method = method;
    exchange.body = body;
    exchange.body_start = body_start;
    exchange.keep_alive = keep_alive;
    exchange.timeouts = {settings_.request_body_timeout, settings_.response_timeout};
    if (!co_await RelayExchange(socket, stream, exchange)) co_return;
  }
}

asio::awaitable<void> FerroServer::HandleTcp(tcp::socket socket) {
  auto self = shared_from_this();
  auto session = FindTcpSession();
  if (!session) {
    logger_->warn("TCP connection from {} dropped: no tunnel offers tcp",
                  DescribeTcpEndpoints(socket));
    boost::system::error_code ec;
    socket.close(ec);
    co_return;
  }
  boost::system::error_code ec;
  socket.set_option(tcp::no_delay(true), ec);
  auto stream = session->connection->Open(Protocol::kTcp, StreamPriority::kNormal);
  TcpStream public_side(std::move(socket));
  co_await Splice(public_side, *stream);
}

asio::awaitable<void> FerroServer::SweepLoop() {
  auto self = shared_from_this();
  const auto period = std::max<std::chrono::milliseconds>(
      std::chrono::milliseconds(100),
      std::min<std::chrono::milliseconds>(settings_.session_timeout / 3, std::chrono::seconds(30)));
  while (!stopped_) {
    sweep_timer_.expires_after(period);
    boost::system::error_code ec;
    co_await sweep_timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (stopped_) break;
    const auto now = std::chrono::steady_clock::now();
    std::erase_if(recently_gone_, [now](const auto& entry) { return entry.second <= now; });
    auto sessions = sessions_;
    for (auto& session : sessions) {
      if (session->connection &&
          now - session->connection->last_received() > settings_.session_timeout) {
        session->connection->Close("no frame for " +
                                   std::to_string(settings_.session_timeout.count()) + " ms");
      }
    }
  }
}

}  // namespace tunnelkit::ferro
