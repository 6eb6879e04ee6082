#include "server/tunnel_server.hpp"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "codec/codec.hpp"
#include "codec/extension.hpp"
#include "server/tunnel_server_state.hpp"
#include "transport/control_send.hpp"
#include "tunnelkit/net/listener.hpp"
#include "tunnelkit/net/url.hpp"
#include "tunnelkit/session/liveness.hpp"
#include "tunnelkit/stream/deadline.hpp"
#include "util/random.hpp"

namespace tunnelkit::zlayer {

namespace {

std::int64_t UnixMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The address of a peer written "ADDR:PORT" or "[V6]:PORT" (FrontDoor's peer strings).
std::optional<asio::ip::address> PeerAddress(const std::string& peer) {
  const auto authority = net::SplitAuthority(peer);
  if (!authority) return std::nullopt;
  boost::system::error_code ec;
  auto address = asio::ip::make_address(std::string(authority->host), ec);
  if (ec) return std::nullopt;
  return address;
}

}  // namespace

TunnelServer::TunnelServer(asio::io_context& io, ServerOptions options,
                           std::shared_ptr<spdlog::logger> logger)
    : io_(io),
      options_(std::move(options)),
      log_(std::move(logger)),
      loop_(io),
      front_door_(io, log_),
      public_limiter_(options_.limits.public_connections),
      unauthenticated_(options_.limits.unauthenticated),
      auth_limiter_(options_.limits.auth_failures) {
  if (options_.public_host.empty()) options_.public_host = options_.ws.host;
}

TunnelServer::~TunnelServer() {
  *alive_ = false;
  front_door_.Stop();
  for (auto& [raw, weak] : live_data_) {
    if (auto data = weak.lock()) data->Close();
  }
  loop_.Stop();
}

bool TunnelServer::Start(std::string& error) {
  if (const auto issues = net::CheckServerLimits(options_.limits, "zlayer."); !issues.empty()) {
    error = issues.front().field + ": " + issues.front().reason;
    return false;
  }
  boost::system::error_code ec;
  const std::string host = options_.public_host.empty() ? "0.0.0.0" : options_.public_host;
  asio::ip::make_address(host, ec);
  if (ec) {
    error = "public address '" + host + "' is not an IP address";
    return false;
  }
  // Control connections: libwebsockets without a listener of its own; the front door owns
  // the port and hands it every connection that is not a data-plane upgrade.
  transport::WsServerOptions control;
  control.adopt_only = true;
  control.small_until_authenticated = true;  // Auth first, in a small message
  // A backstop behind HandleConnection's auth timeout, which closes gracefully first.
  control.unauthenticated_deadline =
      std::chrono::ceil<std::chrono::seconds>(options_.auth_timeout) + std::chrono::seconds(3);
  if (!loop_.Start(
          control,
          [this](std::shared_ptr<WsConnection> conn) {
            asio::co_spawn(io_, HandleConnection(std::move(conn)), asio::detached);
          },
          std::nullopt, error)) {
    return false;
  }
  transport::FrontDoorOptions door;
  door.host = options_.ws.host;
  door.port = options_.ws.port;
  door.tls_cert = options_.ws.tls_cert;
  door.tls_key = options_.ws.tls_key;
  door.head_timeout = options_.auth_timeout;
  door.unauthenticated = options_.limits.unauthenticated;
  door.admit = [this](const asio::ip::address& address) { return Admit(address); };
  door.admit_data_link = [this](const transport::DataLinkCredential* credential,
                                const asio::ip::address& source, const std::string& peer) {
    return AdmitDataLink(credential, source, peer);
  };
  if (!front_door_.Start(
          door,
          [this](std::shared_ptr<transport::DataSocket> data,
                 transport::DataLinkAdmission admission) {
            asio::co_spawn(io_, HandleData(std::move(data), std::move(admission)), asio::detached);
          },
          [this](int fd, std::string head, std::string peer) {
            loop_.Adopt(fd, std::move(head), std::move(peer));
          },
          error)) {
    loop_.Stop();
    return false;
  }
  const bool tls = !options_.ws.tls_cert.empty();
  log_->info("zlayer server listening on {}://{}:{} (public ports {}-{} on {}, {} token(s))",
             tls ? "wss" : "ws", options_.ws.host.empty() ? "0.0.0.0" : options_.ws.host,
             front_door_.port(), options_.ports.low(), options_.ports.high(), host,
             options_.tokens.size());
  return true;
}

void TunnelServer::Stop(const std::string& reason, std::function<void()> done) {
  if (stopping_) return;
  stopping_ = true;
  front_door_.Stop();
  for (auto& [raw, weak] : live_data_) {
    if (auto data = weak.lock()) data->Close();
  }
  auto tunnels = tunnels_;
  for (auto& [id, tunnel] : tunnels) {
    tunnel->end_reason = "server stopping";
    SendControl(tunnel->conn, codec::Disconnect{reason});
    tunnel->conn->Close();
  }
  // Give the lws thread a moment to flush the Disconnect frames, then stop it.
  auto timer = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(300));
  timer->async_wait([this, timer, done = std::move(done)](boost::system::error_code) {
    loop_.Stop();
    if (done) done();
  });
}

std::size_t TunnelServer::CloseDataSockets() {
  std::size_t closed = 0;
  const auto live = live_data_;  // closing may end coroutines that erase entries
  for (auto& [raw, weak] : live) {
    if (auto data = weak.lock()) {
      data->Close();
      ++closed;
    }
  }
  return closed;
}

ServerStats TunnelServer::stats() const {
  ServerStats stats;
  stats.tunnels = tunnels_.size();
  for (const auto& [id, tunnel] : tunnels_) stats.services += tunnel->services.size();
  stats.connections = connections_;
  stats.auth_failures = auth_failures_;
  stats.auth_refusals = auth_limiter_.refused();
  stats.public_connections = public_limiter_.active();
  stats.public_refusals = public_limiter_.refused();
  stats.data_sockets = data_sockets_;
  stats.shared_data_sockets = shared_data_sockets_;
  stats.shared_streams = shared_streams_;
  return stats;
}

bool TunnelServer::Admit(const asio::ip::address& address) {
  if (auth_limiter_.Allowed(address)) return true;
  auth_limiter_.CountRefusal();
  auth_refusal_log_.Log(*log_, spdlog::level::warn,
                        "connection from {} closed: too many authentication failures from {} "
                        "({} refused so far)",
                        address.to_string(), net::SourceKeyText(net::SourceKeyOf(address)),
                        auth_limiter_.refused());
  return false;
}

void TunnelServer::CountAuthFailure(const std::string& peer) {
  ++auth_failures_;
  if (const auto address = PeerAddress(peer)) auth_limiter_.Spend(*address);
}

std::optional<net::ConnectionLimiter::Lease> TunnelServer::TakeUnauthenticated(
    const std::string& peer) {
  const auto address = PeerAddress(peer);
  if (!address) return net::ConnectionLimiter::Lease();  // not a socket peer: nothing to count
  net::ConnectionLimiter::Refusal why = net::ConnectionLimiter::Refusal::kNone;
  auto lease = unauthenticated_.TryAcquire(*address, &why);
  if (!lease) {
    unauthenticated_log_.Log(
        *log_, spdlog::level::warn,
        "connection from {} closed: {} connections are waiting to authenticate{}", peer,
        why == net::ConnectionLimiter::Refusal::kTotal ? unauthenticated_.active()
                                                       : unauthenticated_.active(*address),
        why == net::ConnectionLimiter::Refusal::kTotal ? "" : " from this source");
  }
  return lease;
}

asio::awaitable<void> TunnelServer::HandleConnection(std::shared_ptr<WsConnection> conn) {
  auto unauthenticated = TakeUnauthenticated(conn->peer());
  if (!unauthenticated) {
    conn->Close();
    co_return;
  }
  // The first message must come within auth_timeout.
  asio::steady_timer deadline(io_, options_.auth_timeout);
  bool timed_out = false;
  deadline.async_wait([conn, &timed_out](boost::system::error_code ec) {
    if (!ec) {
      timed_out = true;
      conn->Close();
    }
  });
  auto first = co_await conn->Receive();
  deadline.cancel();
  if (!first) {
    log_->info("connection from {} closed before authenticating{}", conn->peer(),
               timed_out ? " (no message within the auth timeout)" : "");
    co_return;
  }
  const auto decoded = codec::Decode(*first);
  unauthenticated->Release();  // answered below without waiting for the peer again
  if (decoded.ok && std::holds_alternative<codec::Auth>(decoded.message)) {
    co_await RunControl(conn, std::get<codec::Auth>(decoded.message));
    co_return;
  }
  if (decoded.ok && std::holds_alternative<codec::DataAttach>(decoded.message)) {
    // Data plane v1 (DataAttach on a libwebsockets connection): gone since v2.
    log_->warn(
        "connection from {}: data connection of tunnelkit data plane v1 refused (this "
        "server speaks v2; upgrade the agent); closing",
        conn->peer());
    conn->Close();
    co_return;
  }
  log_->warn("connection from {}: {}; closing", conn->peer(),
             decoded.ok ? "first message was " +
                              std::string(codec::MessageTypeName(codec::TypeOf(decoded.message)))
                        : "malformed first message: " + decoded.error);
  SendControl(conn, codec::AuthFail{"Expected AUTH message"});
  conn->Close();
}

std::shared_ptr<TunnelServer::Tunnel> TunnelServer::Authenticate(
    const std::shared_ptr<WsConnection>& conn, const codec::Auth& auth) {
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  auto verdict = options_.tokens.Check(auth.token, now);
  if (verdict.ok && tokens_in_use_.count(verdict.hash) != 0) {
    verdict.ok = false;
    verdict.reason = "Token already in use";
  }
  if (stopping_) {
    verdict.ok = false;
    verdict.reason = "server shutting down";
  }
  if (!verdict.ok) {
    CountAuthFailure(conn->peer());
    auth_failure_log_.Log(*log_, spdlog::level::warn, "agent {} refused: {}", conn->peer(),
                          verdict.reason);
    SendControl(conn, codec::AuthFail{verdict.reason});
    conn->Close();
    return nullptr;
  }

  conn->Authenticated();
  auto tunnel = std::make_shared<Tunnel>();
  tunnel->id = RandomUuidV4();
  tunnel->token_hash = verdict.hash;
  tunnel->peer = conn->peer();
  tunnel->conn = conn;
  const auto hello = codec::DecodeAgentHello(auth.trailer);
  tunnel->extended = hello && hello->version >= codec::kExtensionVersion;
  if (hello && !tunnel->extended) {
    log_->warn(
        "agent {} offers tunnelkit data plane v{}; this server needs v{}: control "
        "channel only, its connections will fail (upgrade the agent)",
        conn->peer(), hello->version, codec::kExtensionVersion);
  }
  tunnel->shared = tunnel->extended && options_.shared_data_channels &&
                   (hello->features & codec::kFeatureSharedDataChannels) != 0;
  tunnel->data_secret = RandomSecret();
  tunnel->data_upgrades = net::ConnectionLimiter({options_.max_data_upgrades_per_link, 0});
  tunnels_[tunnel->id] = tunnel;
  tokens_in_use_.insert(tunnel->token_hash);

  codec::AuthOk ok{tunnel->id, ""};
  if (tunnel->extended) {
    // Features only when accepted: an agent that offered none gets the exact v2 trailer.
    const std::uint8_t features = tunnel->shared ? codec::kFeatureSharedDataChannels : 0;
    ok.trailer =
        codec::EncodeServerHello({codec::kExtensionVersion, tunnel->data_secret, features});
  }
  SendControl(conn, ok);
  log_->info("tunnel {} up: agent {}{}", tunnel->id.ToString(), tunnel->peer,
             !tunnel->extended ? " (upstream agent: control channel only)"
             : tunnel->shared  ? " (shared data channels)"
                               : "");
  return tunnel;
}

bool TunnelServer::OnControlMessage(Tunnel& tunnel, const codec::Message& message) {
  if (std::holds_alternative<codec::HeartbeatAck>(message)) {
    // Activity was recorded by the caller.
  } else if (const auto* unreg = std::get_if<codec::Unregister>(&message)) {
    RemoveService(tunnel, unreg->service_id);
  } else if (const auto* hb = std::get_if<codec::Heartbeat>(&message)) {
    SendControl(tunnel.conn, codec::HeartbeatAck{hb->timestamp_ms});
  } else if (const auto* ack = std::get_if<codec::ConnectAck>(&message)) {
    log_->debug("tunnel {}: agent accepted connection {}", tunnel.id.ToString(),
                ack->connection_id.ToString());
  } else if (const auto* fail = std::get_if<codec::ConnectFail>(&message)) {
    log_->info("tunnel {}: agent could not serve connection {}: {}", tunnel.id.ToString(),
               fail->connection_id.ToString(), fail->reason);
    tunnel.pending.erase(fail->connection_id);  // closes the public socket
  } else {
    tunnel.end_reason = "unexpected " +
                        std::string(codec::MessageTypeName(codec::TypeOf(message))) +
                        " from the agent";
    SendControl(tunnel.conn, codec::Disconnect{"protocol error"});
    tunnel.conn->Close();
    return false;
  }
  return true;
}

void TunnelServer::EndTunnel(Tunnel& tunnel) {
  if (tunnel.end_reason.empty()) tunnel.end_reason = tunnel.conn->close_reason();
  // Free the token and every port; pending public connections are dropped.
  auto services = tunnel.services;
  for (auto& [id, service] : services) RemoveService(tunnel, id);
  tunnel.pending.clear();
  tunnels_.erase(tunnel.id);
  tokens_in_use_.erase(tunnel.token_hash);
  log_->info("tunnel {} down: {}", tunnel.id.ToString(), tunnel.end_reason);
}

asio::awaitable<void> TunnelServer::RunControl(std::shared_ptr<WsConnection> conn,
                                               codec::Auth auth) {
  auto tunnel = Authenticate(conn, auth);
  if (!tunnel) co_return;
  session::LivenessMonitor liveness(
      io_.get_executor(),
      session::LivenessMonitor::Options{options_.heartbeat_interval, options_.heartbeat_timeout},
      [conn] { SendControl(conn, codec::Heartbeat{static_cast<std::uint64_t>(UnixMillis())}); },
      [conn, tunnel] {
        tunnel->end_reason = "heartbeat timeout";
        SendControl(conn, codec::Disconnect{"heartbeat timeout"});
        conn->Close();
      });
  liveness.Start();

  while (auto bytes = co_await conn->Receive()) {
    liveness.OnPeerActivity();
    const auto decoded = codec::Decode(*bytes);
    if (!decoded.ok) {
      tunnel->end_reason = "malformed message: " + decoded.error;
      SendControl(conn, codec::Disconnect{"protocol error"});
      conn->Close();
      break;
    }
    if (const auto* reg = std::get_if<codec::Register>(&decoded.message)) {
      co_await Register(tunnel, *reg);
    } else if (!OnControlMessage(*tunnel, decoded.message)) {
      break;
    }
  }
  liveness.Stop();
  EndTunnel(*tunnel);
}

asio::awaitable<void> TunnelServer::Register(std::shared_ptr<Tunnel> tunnel,
                                             codec::Register request) {
  const auto kind = request.protocol == codec::ServiceProtocol::kUdp ? "udp" : "tcp";
  const auto address =
      asio::ip::make_address(options_.public_host.empty() ? "0.0.0.0" : options_.public_host);
  auto service = std::make_shared<Service>();
  service->id = RandomUuidV4();
  service->name = request.name;
  service->protocol = request.protocol;
  service->local_port = request.local_port;
  service->tunnel = tunnel;

  // A port of the range may be held by another program: try the next one (auto) or fail.
  std::string reason;
  std::vector<std::uint16_t> unusable;
  if (options_.max_ports_per_token != 0 &&
      tunnel->services.size() >= options_.max_ports_per_token) {
    reason = "Registry error: this token holds " + std::to_string(tunnel->services.size()) +
             " ports, the most allowed (max_ports_per_token)";
  }
  while (reason.empty()) {
    auto port = options_.ports.Acquire(request.remote_port, reason);
    if (!port) break;
    boost::system::error_code ec;
    if (request.protocol == codec::ServiceProtocol::kTcp) {
      auto listener = std::make_unique<net::Listener>(io_.get_executor());
      std::string listen_error;
      if (listener->Open(tcp::endpoint(address, *port), listen_error)) {
        service->listener = std::move(listener);
      } else {
        ec = asio::error::address_in_use;
      }
    } else {
      auto socket = std::make_unique<udp::socket>(io_);
      udp::endpoint endpoint(address, *port);
      socket->open(endpoint.protocol(), ec);
      if (!ec) socket->bind(endpoint, ec);
      if (!ec) service->udp_socket = std::move(socket);
    }
    if (!ec) {
      service->public_port = *port;
      break;
    }
    unusable.push_back(*port);
    if (request.remote_port != 0) {
      reason = "Registry error: port " + std::to_string(*port) + " is not available";
      break;
    }
  }
  for (auto port : unusable) options_.ports.Release(port);

  if (service->public_port == 0) {
    log_->warn("tunnel {}: service {} ({}) refused: {}", tunnel->id.ToString(), request.name, kind,
               reason);
    SendControl(tunnel->conn, codec::RegisterFail{reason});
    co_return;
  }
  tunnel->services[service->id] = service;
  codec::RegisterOk ok{service->id, ""};
  if (tunnel->extended) ok.trailer = codec::EncodeRegisterExtra({service->public_port});
  SendControl(tunnel->conn, ok);
  log_->info("tunnel {}: service {} registered: public {} port {} -> agent port {}",
             tunnel->id.ToString(), service->name, kind, service->public_port, service->local_port);
  if (service->listener) {
    net::ListenerOptions listener_options;
    listener_options.name = "public port " + std::to_string(service->public_port);
    listener_options.logger = log_;
    std::weak_ptr<Service> weak = service;
    // RemoveService closes the listener: the handler is not called after that.
    service->listener->Start(
        [this, weak](tcp::socket socket) {
          if (auto s = weak.lock()) AcceptPublic(s, std::move(socket));
        },
        listener_options);
  } else {
    asio::co_spawn(io_, ReceiveUdp(service), asio::detached);
  }
}

void TunnelServer::RemoveService(Tunnel& tunnel, const codec::Uuid& service_id) {
  const auto it = tunnel.services.find(service_id);
  if (it == tunnel.services.end()) return;
  auto service = it->second;
  tunnel.services.erase(it);
  service->closed = true;
  boost::system::error_code ec;
  if (service->listener) service->listener->Close();
  if (service->udp_socket) service->udp_socket->close(ec);
  for (auto& [endpoint, flow] : service->flows) {
    if (flow->data) flow->data->Close();
  }
  service->flows.clear();
  options_.ports.Release(service->public_port);
  log_->info("tunnel {}: service {} unregistered, port {} released", tunnel.id.ToString(),
             service->name, service->public_port);
}

}  // namespace tunnelkit::zlayer
