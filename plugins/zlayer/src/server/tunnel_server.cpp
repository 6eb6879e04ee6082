#include "server/tunnel_server.hpp"

#include <openssl/crypto.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <deque>

#include "codec/codec.hpp"
#include "codec/extension.hpp"
#include "codec/mux_codec.hpp"
#include "transport/data_channel.hpp"
#include "transport/data_splice.hpp"
#include "transport/data_stream.hpp"
#include "transport/mux_splice.hpp"
#include "tunnelkit/mux/session.hpp"
#include "tunnelkit/net/listener.hpp"
#include "tunnelkit/session/liveness.hpp"
#include "tunnelkit/stream/deadline.hpp"
#include "tunnelkit/stream/socket_stream.hpp"
#include "tunnelkit/stream/splice.hpp"
#include "util/random.hpp"

namespace tunnelkit::zlayer {

namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;
using transport::WsConnection;

namespace {

std::int64_t UnixMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

template <class Endpoint>
std::string FormatEndpoint(const Endpoint& endpoint) {
  const auto address = endpoint.address();
  if (address.is_v6()) return "[" + address.to_string() + "]:" + std::to_string(endpoint.port());
  return address.to_string() + ":" + std::to_string(endpoint.port());
}

// Control messages are small: queue them without waiting (and without a co_await, so no
// temporary message lives across a suspension point: g++ 12 mishandles those).
bool SendMessage(const std::shared_ptr<WsConnection>& conn, const codec::Message& message) {
  const auto encoded = codec::Encode(message);
  if (!encoded.ok) {
    spdlog::error("zlayer: cannot encode {}: {}", codec::MessageTypeName(codec::TypeOf(message)),
                  encoded.error);
    return false;
  }
  return conn->Queue(encoded.bytes);
}

// The address of a peer written "ADDR:PORT" or "[V6]:PORT" (FrontDoor's peer strings).
std::optional<asio::ip::address> PeerAddress(const std::string& peer) {
  std::string host = peer;
  if (!host.empty() && host.front() == '[') {
    host = host.substr(1, host.find(']') == std::string::npos ? 0 : host.find(']') - 1);
  } else if (const auto colon = host.rfind(':'); colon != std::string::npos) {
    host.resize(colon);
  }
  boost::system::error_code ec;
  auto address = asio::ip::make_address(host, ec);
  if (ec) return std::nullopt;
  return address;
}

}  // namespace

struct TunnelServer::Service {
  codec::Uuid id;
  std::string name;
  codec::ServiceProtocol protocol = codec::ServiceProtocol::kTcp;
  std::uint16_t local_port = 0;
  std::uint16_t public_port = 0;
  std::weak_ptr<Tunnel> tunnel;
  std::unique_ptr<net::Listener> listener;
  std::unique_ptr<udp::socket> udp_socket;
  std::map<udp::endpoint, std::shared_ptr<UdpFlow>> flows;
  bool closed = false;
};

struct TunnelServer::UdpFlow {
  codec::Uuid connection_id;
  udp::endpoint client;
  std::weak_ptr<Service> service;
  std::shared_ptr<transport::DataSocket> data;   // once attached
  std::deque<std::vector<std::uint8_t>> queued;  // datagrams that arrived before the attach
  std::chrono::steady_clock::time_point last_activity = std::chrono::steady_clock::now();
  net::ConnectionLimiter::Lease lease;  // the flow's public-connection slot
};

struct TunnelServer::Pending {
  codec::Uuid connection_id;
  std::shared_ptr<Service> service;
  std::unique_ptr<tcp::socket> socket;  // TCP
  std::shared_ptr<UdpFlow> flow;        // UDP
  std::unique_ptr<asio::steady_timer> expiry;
  net::ConnectionLimiter::Lease lease;  // TCP: the public connection's slot, kept to its end
};

struct TunnelServer::Tunnel {
  codec::Uuid id;
  std::string token_hash;
  std::string peer;
  std::shared_ptr<WsConnection> conn;
  bool extended = false;  // the agent speaks tunnelkit's data plane
  bool shared = false;    // ... and shares data WebSockets between connections
  std::array<std::uint8_t, 16> data_secret{};
  std::map<codec::Uuid, std::shared_ptr<Service>> services;
  std::map<codec::Uuid, std::shared_ptr<Pending>> pending;
  // Data upgrades admitted by this link's credential, until their DataAttach.
  net::ConnectionLimiter data_upgrades;
  std::string end_reason;
};

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
    SendMessage(tunnel->conn, codec::Disconnect{reason});
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
  SendMessage(conn, codec::AuthFail{"Expected AUTH message"});
  conn->Close();
}

asio::awaitable<void> TunnelServer::RunControl(std::shared_ptr<WsConnection> conn,
                                               codec::Auth auth) {
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
    SendMessage(conn, codec::AuthFail{verdict.reason});
    conn->Close();
    co_return;
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
  SendMessage(conn, ok);
  log_->info("tunnel {} up: agent {}{}", tunnel->id.ToString(), tunnel->peer,
             !tunnel->extended ? " (upstream agent: control channel only)"
             : tunnel->shared  ? " (shared data channels)"
                               : "");

  session::LivenessMonitor liveness(
      io_.get_executor(),
      session::LivenessMonitor::Options{options_.heartbeat_interval, options_.heartbeat_timeout},
      [conn] { SendMessage(conn, codec::Heartbeat{static_cast<std::uint64_t>(UnixMillis())}); },
      [conn, tunnel] {
        tunnel->end_reason = "heartbeat timeout";
        SendMessage(conn, codec::Disconnect{"heartbeat timeout"});
        conn->Close();
      });
  liveness.Start();

  while (auto bytes = co_await conn->Receive()) {
    liveness.OnPeerActivity();
    const auto decoded = codec::Decode(*bytes);
    if (!decoded.ok) {
      tunnel->end_reason = "malformed message: " + decoded.error;
      SendMessage(conn, codec::Disconnect{"protocol error"});
      conn->Close();
      break;
    }
    const auto& message = decoded.message;
    if (const auto* reg = std::get_if<codec::Register>(&message)) {
      co_await Register(tunnel, *reg);
    } else if (const auto* unreg = std::get_if<codec::Unregister>(&message)) {
      RemoveService(*tunnel, unreg->service_id);
    } else if (std::holds_alternative<codec::HeartbeatAck>(message)) {
      // Activity was recorded above.
    } else if (const auto* hb = std::get_if<codec::Heartbeat>(&message)) {
      SendMessage(conn, codec::HeartbeatAck{hb->timestamp_ms});
    } else if (const auto* ack = std::get_if<codec::ConnectAck>(&message)) {
      log_->debug("tunnel {}: agent accepted connection {}", tunnel->id.ToString(),
                  ack->connection_id.ToString());
    } else if (const auto* fail = std::get_if<codec::ConnectFail>(&message)) {
      log_->info("tunnel {}: agent could not serve connection {}: {}", tunnel->id.ToString(),
                 fail->connection_id.ToString(), fail->reason);
      tunnel->pending.erase(fail->connection_id);  // closes the public socket
    } else {
      tunnel->end_reason = "unexpected " +
                           std::string(codec::MessageTypeName(codec::TypeOf(message))) +
                           " from the agent";
      SendMessage(conn, codec::Disconnect{"protocol error"});
      conn->Close();
      break;
    }
  }
  liveness.Stop();
  if (tunnel->end_reason.empty()) tunnel->end_reason = conn->close_reason();

  // Free the token and every port; pending public connections are dropped.
  auto services = tunnel->services;
  for (auto& [id, service] : services) RemoveService(*tunnel, id);
  tunnel->pending.clear();
  tunnels_.erase(tunnel->id);
  tokens_in_use_.erase(tunnel->token_hash);
  log_->info("tunnel {} down: {}", tunnel->id.ToString(), tunnel->end_reason);
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
    SendMessage(tunnel->conn, codec::RegisterFail{reason});
    co_return;
  }
  tunnel->services[service->id] = service;
  codec::RegisterOk ok{service->id, ""};
  if (tunnel->extended) ok.trailer = codec::EncodeRegisterExtra({service->public_port});
  SendMessage(tunnel->conn, ok);
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

void TunnelServer::AddPending(const std::shared_ptr<Tunnel>& tunnel,
                              std::shared_ptr<Pending> pending) {
  pending->expiry = std::make_unique<asio::steady_timer>(io_, options_.pending_timeout);
  std::weak_ptr<Tunnel> weak = tunnel;
  const auto id = pending->connection_id;
  pending->expiry->async_wait([this, weak, id](boost::system::error_code ec) {
    if (ec) return;
    if (auto t = weak.lock()) {
      const auto it = t->pending.find(id);
      if (it != t->pending.end() && it->second->flow) {
        // An unattached UDP flow goes too, with its slot (else its source is stuck to it).
        const auto flow = it->second->flow;
        if (auto service = flow->service.lock()) {
          const auto f = service->flows.find(flow->client);
          if (f != service->flows.end() && f->second == flow) service->flows.erase(f);
        }
      }
      if (t->pending.erase(id) != 0) {
        log_->info("tunnel {}: connection {} dropped: the agent did not attach in time",
                   t->id.ToString(), id.ToString());
      }
    }
  });
  tunnel->pending[id] = std::move(pending);
}

void TunnelServer::WatchPendingClient(const std::shared_ptr<Tunnel>& tunnel,
                                      const std::shared_ptr<Pending>& pending) {
  // A client that leaves while its connection waits for the agent would otherwise hold its
  // descriptor and public slot until pending_timeout (40 s): after a flood of connections that
  // closed again, those kept a server out of descriptors, so the agent's data upgrades could
  // not be accepted and the link served nothing. The wait ends when the socket is readable:
  // end of stream or an error drops the connection; bytes (the client's request) end the
  // watch and stay unread for the splice.
  std::weak_ptr<Tunnel> weak = tunnel;
  const auto id = pending->connection_id;
  pending->socket->async_wait(
      tcp::socket::wait_read, [this, alive = alive_, weak, id](boost::system::error_code ec) {
        if (ec || !*alive) return;
        const auto t = weak.lock();
        if (!t) return;
        const auto it = t->pending.find(id);
        if (it == t->pending.end() || !it->second->socket) return;  // attached meanwhile
        char byte = 0;
        const ssize_t peeked =
            ::recv(it->second->socket->native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
        if (peeked > 0 || (peeked < 0 && (errno == EAGAIN || errno == EINTR))) return;
        it->second->expiry->cancel();
        t->pending.erase(it);
        log_->debug("tunnel {}: connection {} dropped: the client left before the agent attached",
                    t->id.ToString(), id.ToString());
      });
}

void TunnelServer::AcceptPublic(const std::shared_ptr<Service>& service, tcp::socket socket) {
  boost::system::error_code ec;
  auto tunnel = service->tunnel.lock();
  const auto remote = socket.remote_endpoint(ec);
  if (ec || !tunnel || service->closed) {
    socket.close(ec);
    return;
  }
  net::ConnectionLimiter::Refusal why = net::ConnectionLimiter::Refusal::kNone;
  auto lease = public_limiter_.TryAcquire(remote.address(), &why);
  if (!lease) {
    public_refusal_log_.Log(*log_, spdlog::level::warn,
                            "public port {}: connection from {} refused: at {} ({} refused so far)",
                            service->public_port, remote.address().to_string(),
                            why == net::ConnectionLimiter::Refusal::kTotal
                                ? "max_public_connections"
                                : "max_public_connections_per_source",
                            public_limiter_.refused());
    socket.close(ec);
    return;
  }
  auto pending = std::make_shared<Pending>();
  pending->connection_id = RandomUuidV4();
  pending->service = service;
  pending->lease = std::move(*lease);
  const std::string client = FormatEndpoint(remote);
  pending->socket = std::make_unique<tcp::socket>(std::move(socket));
  const auto id = pending->connection_id;
  WatchPendingClient(tunnel, pending);
  AddPending(tunnel, std::move(pending));
  ++connections_;
  log_->debug("tunnel {}: {} connection {} from {}", tunnel->id.ToString(), service->name,
              id.ToString(), client);
  SendMessage(tunnel->conn, codec::Connect{service->id, id, client});
}

asio::awaitable<void> TunnelServer::ReceiveUdp(std::shared_ptr<Service> service) {
  std::vector<std::uint8_t> buffer(65536);
  for (;;) {
    boost::system::error_code ec;
    udp::endpoint from;
    const std::size_t n = co_await service->udp_socket->async_receive_from(
        asio::buffer(buffer), from, asio::redirect_error(asio::use_awaitable, ec));
    if (service->closed) co_return;
    if (ec) {
      if (ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor) co_return;
      continue;  // e.g. ICMP port unreachable reported on a later receive
    }
    auto tunnel = service->tunnel.lock();
    if (!tunnel) co_return;
    auto found = service->flows.find(from);
    const bool created = found == service->flows.end();
    if (created) {
      // A new flow takes a public-connection slot, like a TCP connection.
      auto lease = public_limiter_.TryAcquire(from.address());
      if (!lease) {
        public_refusal_log_.Log(*log_, spdlog::level::warn,
                                "public port {}: udp flow from {} dropped: at the public "
                                "connection caps ({} refused so far)",
                                service->public_port, from.address().to_string(),
                                public_limiter_.refused());
        continue;
      }
      found = service->flows.emplace(from, std::make_shared<UdpFlow>()).first;
      found->second->lease = std::move(*lease);
    }
    auto& flow = found->second;
    if (created) {
      flow->connection_id = RandomUuidV4();
      flow->client = from;
      flow->service = service;
      auto pending = std::make_shared<Pending>();
      pending->connection_id = flow->connection_id;
      pending->service = service;
      pending->flow = flow;
      AddPending(tunnel, pending);
      ++connections_;
      SendMessage(tunnel->conn,
                  codec::Connect{service->id, flow->connection_id, FormatEndpoint(from)});
    }
    flow->last_activity = std::chrono::steady_clock::now();
    if (flow->data) {
      static constexpr std::uint8_t kDatagram[1] = {
          static_cast<std::uint8_t>(codec::DataFrameKind::kDatagram)};
      auto data = flow->data;
      co_await data->WriteMessage(asio::buffer(kDatagram), asio::buffer(buffer.data(), n));
    } else if (flow->queued.size() < 64) {
      flow->queued.emplace_back(buffer.begin(), buffer.begin() + static_cast<long>(n));
    }
  }
}

transport::DataLinkAdmission TunnelServer::AdmitDataLink(
    const transport::DataLinkCredential* credential, const asio::ip::address& source,
    const std::string& peer) {
  using Verdict = transport::DataLinkAdmission::Verdict;
  transport::DataLinkAdmission admission;
  if (credential == nullptr) return admission;
  const auto it = tunnels_.find(credential->tunnel_id);
  const bool known = it != tunnels_.end() && it->second->extended;
  // The secret in constant time (against a dummy when the tunnel is unknown).
  static const std::array<std::uint8_t, 16> kNoSecret{};
  const auto& secret = known ? it->second->data_secret : kNoSecret;
  if (CRYPTO_memcmp(credential->secret.data(), secret.data(), secret.size()) != 0 || !known) {
    CountAuthFailure(peer);
    auth_failure_log_.Log(*log_, spdlog::level::warn, "data upgrade from {} names {}; closing",
                          peer,
                          known ? "tunnel " + it->second->id.ToString() + " with a wrong secret"
                                : std::string("an unknown tunnel"));
    admission.verdict = Verdict::kRefused;
    return admission;
  }
  if (auto slot = it->second->data_upgrades.TryAcquire(source)) {
    admission.verdict = Verdict::kAdmitted;
    admission.link_slot = std::move(*slot);
  }
  return admission;
}

asio::awaitable<void> TunnelServer::HandleData(std::shared_ptr<transport::DataSocket> data,
                                               transport::DataLinkAdmission admission) {
  const auto alive = alive_;
  live_data_[data.get()] = data;
  // Until DataAttach the upgrade holds a slot: its link's when the front door admitted it by
  // its link, else one of its source's connections before authentication.
  std::optional<net::ConnectionLimiter::Lease> unauthenticated;
  if (admission.verdict == transport::DataLinkAdmission::Verdict::kAdmitted) {
    unauthenticated = std::move(admission.link_slot);
  } else {
    unauthenticated = TakeUnauthenticated(data->peer());
  }
  if (!unauthenticated) {
    data->Close();
    live_data_.erase(data.get());
    co_return;
  }
  // The first message must be DataAttach, within auth_timeout.
  Deadline deadline(io_.get_executor());
  deadline.Arm(options_.auth_timeout, [data] { data->Close(); });
  boost::system::error_code ec;
  auto first = co_await transport::ReadDataMessage(*data, 1024, ec);
  if (!*alive) co_return;
  const bool timed_out = deadline.fired();
  deadline.Cancel();
  unauthenticated->Release();
  std::optional<codec::DataAttach> attach;
  if (first) {
    auto decoded = codec::Decode(*first);
    if (decoded.ok && std::holds_alternative<codec::DataAttach>(decoded.message)) {
      attach = std::get<codec::DataAttach>(decoded.message);
    } else {
      log_->warn("data connection from {}: first message is not DataAttach ({}); closing",
                 data->peer(),
                 decoded.ok ? std::string(codec::MessageTypeName(codec::TypeOf(decoded.message)))
                            : decoded.error);
    }
  } else {
    log_->info("data connection from {} closed before DataAttach: {}", data->peer(),
               timed_out ? std::string("timed out") : ec.message());
  }
  if (attach) {
    if (data->kind() == transport::DataKind::kShared) {
      co_await RunSharedData(data, *attach);
    } else {
      co_await RunData(data, *attach);
    }
  }
  if (!*alive) co_return;
  data->Close();
  if (*alive) live_data_.erase(data.get());
}

std::shared_ptr<TunnelServer::Tunnel> TunnelServer::AttachTarget(const transport::DataSocket& data,
                                                                 const codec::DataAttach& attach) {
  const char* what =
      data.kind() == transport::DataKind::kShared ? "shared data connection" : "data connection";
  const auto it = tunnels_.find(attach.tunnel_id);
  if (it == tunnels_.end() || !it->second->extended) {
    CountAuthFailure(data.peer());
    auth_failure_log_.Log(*log_, spdlog::level::warn, "{} from {} for an unknown tunnel; closing",
                          what, data.peer());
    return nullptr;
  }
  auto tunnel = it->second;
  // Check the secret before anything else about the request, in constant time.
  if (CRYPTO_memcmp(attach.secret.data(), tunnel->data_secret.data(), attach.secret.size()) != 0) {
    CountAuthFailure(data.peer());
    auth_failure_log_.Log(*log_, spdlog::level::warn,
                          "{} from {} for tunnel {} with a wrong secret; closing", what,
                          data.peer(), tunnel->id.ToString());
    return nullptr;
  }
  return tunnel;
}

asio::awaitable<void> TunnelServer::RunSharedData(std::shared_ptr<transport::DataSocket> data,
                                                  codec::DataAttach attach) {
  const auto alive = alive_;
  auto tunnel = AttachTarget(*data, attach);
  if (!tunnel) co_return;
  if (!tunnel->shared) {
    log_->warn(
        "shared data connection from {} for tunnel {}, which did not negotiate shared "
        "data channels; closing",
        data->peer(), tunnel->id.ToString());
    co_return;
  }
  ++shared_data_sockets_;
  const std::string label = "zlayer shared data from " + data->peer();
  auto session = mux::MuxSession::Create(
      std::make_unique<transport::DataChannel>(data, label),
      std::make_unique<codec::ZlayerMuxCodec>(),
      transport::SharedChannelConfig(mux::IdParity::kEven, 65536, label), log_);
  session->Start();
  log_->debug("tunnel {}: shared data connection from {} attached", tunnel->id.ToString(),
              data->peer());
  std::weak_ptr<Tunnel> weak = tunnel;
  tunnel.reset();  // the tunnel may end while the session lives on
  while (auto stream = co_await session->Accept()) {
    if (!*alive) co_return;
    auto target = weak.lock();
    if (!target) {
      stream->Reset(mux::reset_code::kRefused, "tunnel closed");
      continue;
    }
    asio::co_spawn(io_, ServeSharedStream(std::move(target), std::move(stream)), asio::detached);
  }
  // The session logged why it closed (one line); its streams failed with it.
  if (!*alive) co_return;
  data->Close();
}

asio::awaitable<void> TunnelServer::ServeSharedStream(std::shared_ptr<Tunnel> tunnel,
                                                      std::shared_ptr<mux::MuxStream> stream) {
  const auto alive = alive_;
  const auto metadata = stream->open_metadata();
  codec::Uuid id;
  std::string refusal;
  if (metadata.size() != id.bytes.size()) {
    refusal =
        "open metadata of " + std::to_string(metadata.size()) + " bytes is not a connection id";
  } else {
    std::copy(metadata.begin(), metadata.end(), id.bytes.begin());
  }
  std::shared_ptr<Pending> pending;
  if (refusal.empty()) {
    const auto it = tunnel->pending.find(id);
    if (it == tunnel->pending.end()) {
      refusal = "unknown or expired connection " + id.ToString();
    } else if (!it->second->socket) {
      refusal = "connection " + id.ToString() + " is a UDP flow (per-connection data sockets only)";
    } else {
      pending = it->second;
      tunnel->pending.erase(it);
      pending->expiry->cancel();
    }
  }
  if (!pending) {
    log_->info("tunnel {}: {} refused: {}", tunnel->id.ToString(), stream->Describe(), refusal);
    stream->Reset(mux::reset_code::kRefused, refusal);
    co_return;
  }
  ++shared_streams_;
  const std::string tunnel_id = tunnel->id.ToString();
  tunnel.reset();
  TcpStream public_side(std::move(*pending->socket));
  const auto lease = std::move(pending->lease);  // held until the connection ends
  pending.reset();
  const auto result = co_await transport::SpliceMux(public_side, *stream);
  if (!*alive) co_return;
  log_->debug("tunnel {}: connection {} done ({} bytes in, {} out{}{})", tunnel_id, id.ToString(),
              result.a_to_b, result.b_to_a, result.ec ? ", " : "",
              result.ec ? result.ec.message() : "");
}

asio::awaitable<void> TunnelServer::RunData(std::shared_ptr<transport::DataSocket> data,
                                            codec::DataAttach attach) {
  auto tunnel = AttachTarget(*data, attach);
  if (!tunnel) co_return;
  const auto pending_it = tunnel->pending.find(attach.connection_id);
  if (pending_it == tunnel->pending.end()) {
    log_->info("tunnel {}: data connection for unknown or expired connection {}; closing",
               tunnel->id.ToString(), attach.connection_id.ToString());
    co_return;
  }
  auto pending = pending_it->second;
  tunnel->pending.erase(pending_it);
  pending->expiry->cancel();
  ++data_sockets_;

  if (pending->socket) {
    const auto lease = std::move(pending->lease);  // held until the connection ends
    TcpStream public_side(std::move(*pending->socket));
    transport::DataStream agent_side(data, "zlayer data " + attach.connection_id.ToString());
    const auto alive = alive_;
    const auto spliced =
        co_await transport::SpliceData(public_side, agent_side, transport::DataSide::kServer);
    const auto& result = spliced.totals;
    if (spliced.clean) co_await data->Finish();
    if (!*alive) co_return;
    log_->debug("tunnel {}: connection {} done ({} bytes in, {} out{}{})", tunnel->id.ToString(),
                attach.connection_id.ToString(), result.a_to_b, result.b_to_a,
                result.ec ? ", " : "", result.ec ? result.ec.message() : "");
    co_return;
  }
  co_await ServeUdpFlow(pending->flow, data);
}

asio::awaitable<void> TunnelServer::ServeUdpFlow(std::shared_ptr<UdpFlow> flow,
                                                 std::shared_ptr<transport::DataSocket> data) {
  const auto alive = alive_;
  auto service = flow->service.lock();
  if (!service || service->closed) co_return;
  static constexpr std::uint8_t kDatagram[1] = {
      static_cast<std::uint8_t>(codec::DataFrameKind::kDatagram)};
  // Datagrams that came before the attach go first; ReceiveUdp queues more meanwhile, and
  // writes itself once `data` is set (one writer at a time).
  while (!flow->queued.empty()) {
    auto datagram = std::move(flow->queued.front());
    flow->queued.pop_front();
    if (co_await data->WriteMessage(asio::buffer(kDatagram), asio::buffer(datagram))) co_return;
  }
  if (!*alive) co_return;
  flow->data = data;
  // Idle expiry: nothing either way for udp_idle_timeout ends the flow.
  auto watchdog = std::make_shared<asio::steady_timer>(io_);
  auto ended = std::make_shared<bool>(false);
  asio::co_spawn(
      io_,
      [flow, data, watchdog, ended, idle = options_.udp_idle_timeout]() -> asio::awaitable<void> {
        for (;;) {
          watchdog->expires_at(flow->last_activity + idle);
          boost::system::error_code ec;
          co_await watchdog->async_wait(asio::redirect_error(asio::use_awaitable, ec));
          if (ec || *ended) co_return;
          if (std::chrono::steady_clock::now() - flow->last_activity >= idle) {
            data->Close();
            co_return;
          }
        }
      },
      asio::detached);
  boost::system::error_code ec;
  while (auto message =
             co_await transport::ReadDataMessage(*data, transport::kMaxDataMessage, ec)) {
    if (!*alive) break;
    const auto frame = codec::DecodeDataFrame(*message);
    if (!frame.ok || frame.frame.kind != codec::DataFrameKind::kDatagram) {
      log_->warn("udp flow {}: bad frame from the agent; closing", flow->connection_id.ToString());
      break;
    }
    flow->last_activity = std::chrono::steady_clock::now();
    if (service->closed) break;
    boost::system::error_code send_ec;
    co_await service->udp_socket->async_send_to(
        asio::buffer(frame.frame.payload.data(), frame.frame.payload.size()), flow->client,
        asio::redirect_error(asio::use_awaitable, send_ec));
  }
  *ended = true;
  watchdog->cancel();
  data->Close();
  if (!service->closed) {
    const auto it = service->flows.find(flow->client);
    if (it != service->flows.end() && it->second == flow) service->flows.erase(it);
  }
}

}  // namespace tunnelkit::zlayer
