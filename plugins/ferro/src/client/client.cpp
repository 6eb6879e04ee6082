#include "client/client.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "mux/connection.hpp"
#include "session/handshake.hpp"
#include "tunnelkit/stream/socket_stream.hpp"
#include "tunnelkit/stream/splice.hpp"
#include "tunnelkit/stream/tls_stream.hpp"

namespace tunnelkit::ferro {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

// Heartbeat intervals without any frame from the server before the session is given up.
constexpr int kMissedHeartbeatAcks = 3;

std::uint64_t UnixMillis() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

// "host:port", "[v6]:port" -> (host, port)
std::pair<std::string, std::string> SplitHostPort(const std::string& text) {
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close != std::string::npos && close + 1 < text.size() && text[close + 1] == ':') {
      return {text.substr(1, close - 1), text.substr(close + 2)};
    }
  }
  const auto colon = text.rfind(':');
  if (colon == std::string::npos) return {text, ""};
  return {text.substr(0, colon), text.substr(colon + 1)};
}

// Connects to host:port within `timeout`; an empty error code on success.
asio::awaitable<boost::system::error_code> ConnectWithTimeout(tcp::socket& socket,
                                                              const std::string& host,
                                                              const std::string& port,
                                                              std::chrono::milliseconds timeout) {
  boost::system::error_code ec;
  tcp::resolver resolver(socket.get_executor());
  auto endpoints =
      co_await resolver.async_resolve(host, port, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return ec;
  asio::steady_timer timer(socket.get_executor());
  bool expired = false;
  timer.expires_after(timeout);
  timer.async_wait([&](const boost::system::error_code& e) {
    if (e) return;
    expired = true;
    boost::system::error_code ignored;
    socket.close(ignored);
  });
  co_await asio::async_connect(socket, endpoints, asio::redirect_error(asio::use_awaitable, ec));
  timer.cancel();
  if (expired) co_return asio::error::timed_out;
  co_return ec;
}

struct AttemptState {
  explicit AttemptState(const asio::any_io_executor& ex) : closed(ex) {}
  Notifier closed;
  std::string reason;
  bool done = false;
};

}  // namespace

FerroClient::FerroClient(asio::io_context& io, ClientSettings settings,
                         std::shared_ptr<spdlog::logger> logger)
    : io_(io), settings_(std::move(settings)), logger_(std::move(logger)) {}

FerroClient::~FerroClient() = default;

std::uint64_t FerroClient::spliced_bytes() const {
  const auto connection = connection_.lock();
  return connection ? connection->spliced_bytes() : 0;
}

std::size_t FerroClient::stream_count() const {
  const auto connection = connection_.lock();
  return connection ? connection->stream_count() : 0;
}

void FerroClient::Stop() {
  stopped_ = true;
  if (supervisor_) supervisor_->Stop();
}

asio::awaitable<session::SupervisorResult> FerroClient::Run() {
  auto self = shared_from_this();
  if (settings_.tls) {
    TlsClientOptions options = settings_.tls_settings;
    options.tls13_only = true;
    tls_ = MakeTlsClientContext(options);
    if (settings_.tls_settings.insecure_skip_verify) {
      logger_->warn(
          "TLS certificate verification is DISABLED (--tls-skip-verify): the server "
          "is not authenticated and the token can be intercepted");
    }
  }
  session::Supervisor::Options options;
  options.name = "ferro client";
  options.backoff = settings_.backoff;
  options.logger = logger_;
  std::weak_ptr<FerroClient> weak = self;
  supervisor_ = std::make_unique<session::Supervisor>(
      io_.get_executor(), options,
      [weak](session::SessionControl& control) -> asio::awaitable<session::SessionOutcome> {
        auto client = weak.lock();
        if (!client) co_return session::SessionOutcome::Stopped("client gone");
        co_return co_await client->ConnectOnce(control);
      });
  if (stopped_) supervisor_->Stop();
  session::SupervisorResult result = co_await supervisor_->Run();
  if (result.failed()) logger_->error("{}", result.Describe());
  co_return result;
}

asio::awaitable<std::unique_ptr<Stream>> FerroClient::Dial(std::string& reason) {
  const auto [host, port] = SplitHostPort(settings_.server);
  tcp::socket socket(io_);
  boost::system::error_code ec =
      co_await ConnectWithTimeout(socket, host, port, settings_.handshake_timeout);
  if (ec) {
    reason = "cannot connect to " + settings_.server + ": " + ec.message();
    co_return nullptr;
  }
  socket.set_option(tcp::no_delay(true), ec);
  socket.set_option(asio::socket_base::keep_alive(true), ec);
  if (!tls_) co_return std::make_unique<TcpStream>(std::move(socket));

  // The core TlsStream sends SNI for names and checks the certificate against the name or
  // IP address; the context decides whether failures count (--tls-skip-verify).
  const std::string name =
      settings_.tls_server_name.empty() ? std::string(host) : settings_.tls_server_name;
  auto tls = std::make_unique<TlsStream>(std::move(socket), *tls_, TlsStream::Role::kClient, name);
  asio::steady_timer timer(io_);
  timer.expires_after(settings_.handshake_timeout);
  timer.async_wait([&tls](const boost::system::error_code& e) {
    if (!e) tls->Reset();
  });
  ec = co_await tls->Handshake();
  timer.cancel();
  if (ec) {
    reason = "TLS handshake with " + settings_.server +
             " failed: " + (tls->LastError().empty() ? ec.message() : tls->LastError());
    co_return nullptr;
  }
  co_return tls;
}

asio::awaitable<session::SessionOutcome> FerroClient::ConnectOnce(
    session::SessionControl& control) {
  using session::SessionOutcome;
  auto self = shared_from_this();
  std::string reason;
  std::unique_ptr<Stream> transport = co_await Dial(reason);
  if (!transport) co_return SessionOutcome::Transient(reason);
  if (control.stop_requested()) co_return SessionOutcome::Stopped();
  Stream* raw_transport = transport.get();
  bool handshake_done = false;
  control.OnStop([raw_transport, &handshake_done] {
    if (!handshake_done) raw_transport->Reset();
  });

  Handshake hello;
  hello.token = settings_.token;
  hello.tunnel_id = settings_.tunnel_id;
  hello.min_version = kProtocolVersion;
  hello.max_version = kProtocolVersion;
  hello.capabilities = {std::string(kCapabilityBasic), std::string(kCapabilityTcp)};
  if (settings_.flow_control) hello.capabilities.emplace_back(kCapabilityFlow);
  const Frame hello_frame = hello;  // a named Frame: g++ 12 and temporaries in co_await
  if (auto ec = co_await WriteOneFrame(*transport, hello_frame); ec) {
    handshake_done = true;
    co_return SessionOutcome::Transient("sending the handshake failed: " + ec.message());
  }
  FrameDecoder decoder;
  ReadFrameResult reply = co_await ReadOneFrame(*transport, decoder, settings_.handshake_timeout);
  handshake_done = true;
  if (control.stop_requested()) co_return SessionOutcome::Stopped();
  if (!reply.frame) {
    co_return SessionOutcome::Transient("handshake with " + settings_.server +
                                        " failed: " + reply.error);
  }
  const auto* ack = std::get_if<HandshakeAck>(&*reply.frame);
  if (!ack) {
    co_return SessionOutcome::Transient(
        "handshake with " + settings_.server + " failed: server answered " +
        std::string(FrameName(*reply.frame)) + ", not HandshakeAck");
  }
  if (ack->status != HandshakeStatus::kSuccess) {
    reason = "server " + settings_.server +
             " refused the handshake: " + std::string(HandshakeStatusName(ack->status));
    switch (ack->status) {
      case HandshakeStatus::kInvalidToken:
        co_return SessionOutcome::Permanent(reason + " (the token is wrong)");
      case HandshakeStatus::kUnsupportedVersion:
      case HandshakeStatus::kVersionMismatch:
        co_return SessionOutcome::Permanent(reason);
      default:
        // TunnelIdTaken (the old session may still be registered), RateLimited: may clear up.
        co_return SessionOutcome::Transient(reason);
    }
  }
  if (ack->version != kProtocolVersion) {
    co_return SessionOutcome::Permanent("server chose protocol version " +
                                        std::to_string(ack->version) + ", we speak 1");
  }
  const bool flow =
      settings_.flow_control && HasCapability(ack->server_capabilities, kCapabilityFlow);
  Connection::Options options;
  options.is_server = false;
  options.flow_control = flow;
  options.kernel_splice = settings_.kernel_splice;
  auto connection =
      std::make_shared<Connection>(std::move(transport), std::move(decoder), options, logger_);
  connection_ = connection;
  control.OnStop([connection] { connection->Close("client stopping"); });
  auto state = std::make_shared<AttemptState>(io_.get_executor());
  std::weak_ptr<FerroClient> weak = self;
  connection->Start(
      [weak](std::shared_ptr<MuxStream> stream) {
        if (auto client = weak.lock()) {
          asio::co_spawn(client->io_, client->ServeStream(std::move(stream)), asio::detached);
        }
      },
      [](const Frame&) {},  // HeartbeatAck: any frame refreshes last_received (Heartbeats)
      [state](const std::string& why) {
        state->reason = why;
        state->done = true;
        state->closed.Notify();
      });
  const std::string tunnel = settings_.tunnel_id.value_or(UuidToString(ack->session_id));
  logger_->info("connected to {} as tunnel '{}' (session {}, {}{})", settings_.server, tunnel,
                UuidToString(ack->session_id), tls_ ? "TLS" : "TCP", flow ? ", tk-flow" : "");
  control.MarkConnected("tunnel " + tunnel);
  auto heartbeat = std::make_shared<asio::steady_timer>(io_);
  asio::co_spawn(io_, Heartbeats(connection, heartbeat), asio::detached);
  while (!state->done) co_await state->closed.Wait();
  // The heartbeat loop holds the connection: wake it now rather than up to an interval later
  // (a client reconnecting or stopping would otherwise keep each old connection for 30 s).
  heartbeat->cancel();
  if (control.stop_requested()) co_return SessionOutcome::Stopped(state->reason);
  co_return SessionOutcome::Transient(state->reason);
}

asio::awaitable<void> FerroClient::Heartbeats(std::shared_ptr<Connection> connection,
                                              std::shared_ptr<asio::steady_timer> timer) {
  auto self = shared_from_this();  // settings_ is read after every wait
  while (!connection->closed()) {
    // The server answers every Heartbeat (HeartbeatAck). A path that silently drops what the
    // server sends (a NAT that forgot us, a blackhole) would otherwise keep this session
    // "connected" until TCP gives up retransmitting, many minutes later.
    const auto silent = std::chrono::steady_clock::now() - connection->last_received();
    if (silent > kMissedHeartbeatAcks * settings_.heartbeat_interval) {
      connection->Close(
          "server silent for " +
          std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(silent).count()) +
          " ms (" + std::to_string(kMissedHeartbeatAcks) + " heartbeats unanswered)");
      co_return;
    }
    connection->Send(Heartbeat{UnixMillis()}, StreamPriority::kCritical);
    timer->expires_after(settings_.heartbeat_interval);
    boost::system::error_code ec;
    co_await timer->async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

asio::awaitable<void> FerroClient::ServeStream(std::shared_ptr<MuxStream> stream) {
  auto self = shared_from_this();
  // Raw TCP streams are spliced to the origin's host and port below; HTTP and WebSocket
  // streams go to the stream server (the core origin proxy) when one is set.
  if (stream_server_ && stream->protocol() != Protocol::kTcp) {
    co_await stream_server_(stream);
    co_return;
  }
  tcp::socket socket(io_);
  auto ec = co_await ConnectWithTimeout(socket, settings_.origin_host, settings_.origin_port,
                                        std::chrono::seconds(10));
  if (ec) {
    logger_->warn("{}: origin {}:{} unreachable: {}", stream->Describe(), settings_.origin_host,
                  settings_.origin_port, ec.message());
    if (stream->protocol() == Protocol::kHttp || stream->protocol() == Protocol::kWebSocket) {
      static constexpr std::string_view kBadGateway =
          "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: 25\r\n"
          "Connection: close\r\n\r\nLocal service unreachable";
      co_await stream->Write(asio::buffer(kBadGateway.data(), kBadGateway.size()));
      co_await stream->ShutdownWrite();
    } else {
      stream->Reset();
    }
    co_return;
  }
  socket.set_option(tcp::no_delay(true), ec);
  TcpStream origin(std::move(socket));
  co_await Splice(*stream, origin);
}

}  // namespace tunnelkit::ferro
