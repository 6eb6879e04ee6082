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
#include "server/tunnel_server_state.hpp"
#include "transport/control_send.hpp"
#include "transport/data_channel.hpp"
#include "transport/data_splice.hpp"
#include "transport/data_stream.hpp"
#include "transport/mux_splice.hpp"
#include "tunnelkit/mux/session.hpp"
#include "tunnelkit/net/listener.hpp"
#include "tunnelkit/net/url.hpp"
#include "tunnelkit/stream/deadline.hpp"
#include "tunnelkit/stream/socket_stream.hpp"
#include "tunnelkit/stream/splice.hpp"
#include "util/random.hpp"

// The public side of the server: public connections and UDP flows, and the data WebSockets that
// carry them to the agent.

namespace tunnelkit::zlayer {

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
  const std::string client = net::EndpointText(remote);
  pending->socket = std::make_unique<tcp::socket>(std::move(socket));
  const auto id = pending->connection_id;
  WatchPendingClient(tunnel, pending);
  AddPending(tunnel, std::move(pending));
  ++connections_;
  log_->debug("tunnel {}: {} connection {} from {}", tunnel->id.ToString(), service->name,
              id.ToString(), client);
  SendControl(tunnel->conn, codec::Connect{service->id, id, client});
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
      SendControl(tunnel->conn,
                  codec::Connect{service->id, flow->connection_id, net::EndpointText(from)});
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
