// `tunnelctl serve --backend zlayer`: accepts agents on a WebSocket listener, authenticates them
// with the token store, assigns public ports from the range, opens those ports (TCP and UDP),
// sends heartbeats, and carries each public connection to the agent over its own data
// WebSocket (tunnelkit's extension; upstream agents get the control channel only).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include <spdlog/fwd.h>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "codec/messages.hpp"
#include "server/port_pool.hpp"
#include "server/token_store.hpp"
#include "transport/data_socket.hpp"
#include "transport/front_door.hpp"
#include "transport/ws_loop.hpp"
#include "tunnelkit/net/connection_limiter.hpp"
#include "tunnelkit/net/server_limits.hpp"
#include "tunnelkit/net/source_rate_limiter.hpp"
#include "tunnelkit/rate_limited_log.hpp"

namespace tunnelkit::mux {
class MuxStream;
}

namespace tunnelkit::zlayer {

struct ServerOptions {
  transport::WsServerOptions ws;
  std::string public_host;  // address the public ports bind to; "" = the listen host
  PortPool ports;
  TokenStore tokens;
  std::chrono::milliseconds auth_timeout{10000};
  std::chrono::milliseconds heartbeat_interval{30000};
  std::chrono::milliseconds heartbeat_timeout{40000};
  // A public connection the agent has not attached within this time is dropped.
  std::chrono::milliseconds pending_timeout{40000};
  std::chrono::milliseconds udp_idle_timeout{60000};
  // Accept an agent's offer of shared data channels (several public connections per data
  // WebSocket, carried by the core multiplexer). false: answer like a server that predates
  // them (one data WebSocket per connection).
  bool shared_data_channels = true;
  // What anonymous clients may hold (docs/reliability.md): public connections and UDP flows on
  // the public ports; connections before Auth / DataAttach; wrong tokens and data secrets per
  // source.
  net::ServerLimits limits;
  // Public ports one token (one tunnel) may hold at once; 0: no cap.
  std::size_t max_ports_per_token = 32;
  // Data upgrades one link may have between their upgrade head and DataAttach when they name
  // their link (transport/data_link.hpp); beyond, they count against their source's
  // connections before authentication (limits.unauthenticated) like any other.
  std::size_t max_data_upgrades_per_link = 256;
};

// A snapshot for logs, tests and the admin view.
struct ServerStats {
  std::size_t tunnels = 0;
  std::size_t services = 0;
  std::uint64_t connections = 0;  // public connections/flows handed to agents
  std::uint64_t auth_failures = 0;
  std::uint64_t auth_refusals = 0;     // connections closed at accept: source out of failures
  std::size_t public_connections = 0;  // live, counted against the caps
  std::uint64_t public_refusals = 0;
  std::uint64_t data_sockets = 0;         // per-connection data WebSockets attached
  std::uint64_t shared_data_sockets = 0;  // shared (multiplexed) data WebSockets attached
  std::uint64_t shared_streams = 0;       // public connections carried by shared ones
};

class TunnelServer {
 public:
  TunnelServer(boost::asio::io_context& io, ServerOptions options,
               std::shared_ptr<spdlog::logger> logger);
  ~TunnelServer();
  TunnelServer(const TunnelServer&) = delete;
  TunnelServer& operator=(const TunnelServer&) = delete;

  bool Start(std::string& error);
  // Sends Disconnect{reason} to every agent, closes the public ports, and stops the WebSocket
  // thread shortly after (so the Disconnect frames leave). Calls `done` on the io_context.
  void Stop(const std::string& reason, std::function<void()> done = {});
  int listen_port() const { return front_door_.port(); }
  ServerStats stats() const;
  // Closes every live data WebSocket (per-connection and shared) at once, as a network failure
  // would; tunnels and their control connections stay up. Returns how many. For tests.
  std::size_t CloseDataSockets();

  struct Tunnel;
  struct Service;
  struct Pending;
  struct UdpFlow;

 private:
  boost::asio::awaitable<void> HandleConnection(std::shared_ptr<transport::WsConnection> conn);
  boost::asio::awaitable<void> RunControl(std::shared_ptr<transport::WsConnection> conn,
                                          codec::Auth auth);
  // RunControl's parts: the token check and the new tunnel (null when refused, answered and
  // closed); one control message other than Register (false when it ends the link); the
  // tunnel's ports and token freed.
  std::shared_ptr<Tunnel> Authenticate(const std::shared_ptr<transport::WsConnection>& conn,
                                       const codec::Auth& auth);
  bool OnControlMessage(Tunnel& tunnel, const codec::Message& message);
  void EndTunnel(Tunnel& tunnel);
  boost::asio::awaitable<void> HandleData(std::shared_ptr<transport::DataSocket> data,
                                          transport::DataLinkAdmission admission);
  // The front door's question about a data upgrade's link credential.
  transport::DataLinkAdmission AdmitDataLink(const transport::DataLinkCredential* credential,
                                             const boost::asio::ip::address& source,
                                             const std::string& peer);
  boost::asio::awaitable<void> RunData(std::shared_ptr<transport::DataSocket> data,
                                       codec::DataAttach attach);
  // A shared data WebSocket: a MuxSession whose streams each name a pending connection.
  boost::asio::awaitable<void> RunSharedData(std::shared_ptr<transport::DataSocket> data,
                                             codec::DataAttach attach);
  boost::asio::awaitable<void> ServeSharedStream(std::shared_ptr<Tunnel> tunnel,
                                                 std::shared_ptr<mux::MuxStream> stream);
  // The tunnel that DataAttach names, if the secret matches (logs why not otherwise).
  std::shared_ptr<Tunnel> AttachTarget(const transport::DataSocket& data,
                                       const codec::DataAttach& attach);
  boost::asio::awaitable<void> Register(std::shared_ptr<Tunnel> tunnel, codec::Register request);
  void RemoveService(Tunnel& tunnel, const codec::Uuid& service_id);
  boost::asio::awaitable<void> ReceiveUdp(std::shared_ptr<Service> service);
  void AcceptPublic(const std::shared_ptr<Service>& service, boost::asio::ip::tcp::socket socket);
  void AddPending(const std::shared_ptr<Tunnel>& tunnel, std::shared_ptr<Pending> pending);
  // Drops a pending TCP connection as soon as its client leaves before the agent attached it.
  void WatchPendingClient(const std::shared_ptr<Tunnel>& tunnel,
                          const std::shared_ptr<Pending>& pending);
  // Before anything is read: false when the source spent its authentication failures.
  bool Admit(const boost::asio::ip::address& address);
  // A wrong token or data secret from `peer` ("ADDR:PORT"), counted against its source.
  void CountAuthFailure(const std::string& peer);
  std::optional<net::ConnectionLimiter::Lease> TakeUnauthenticated(const std::string& peer);
  boost::asio::awaitable<void> ServeUdpFlow(std::shared_ptr<UdpFlow> flow,
                                            std::shared_ptr<transport::DataSocket> data);

  boost::asio::io_context& io_;
  ServerOptions options_;
  std::shared_ptr<spdlog::logger> log_;
  transport::WsLoop loop_;  // control connections (libwebsockets)
  transport::FrontDoor front_door_;
  // Live data sockets, closed on Stop.
  std::map<transport::DataSocket*, std::weak_ptr<transport::DataSocket>> live_data_;
  // Data coroutines outlive the server when it is destroyed mid-transfer (their sockets are
  // closed then): they check this before touching it again.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::map<codec::Uuid, std::shared_ptr<Tunnel>> tunnels_;
  std::set<std::string> tokens_in_use_;  // hashes
  std::uint64_t connections_ = 0;
  std::uint64_t auth_failures_ = 0;
  std::uint64_t data_sockets_ = 0;
  std::uint64_t shared_data_sockets_ = 0;
  std::uint64_t shared_streams_ = 0;
  bool stopping_ = false;
  net::ConnectionLimiter public_limiter_;
  net::ConnectionLimiter unauthenticated_;
  net::SourceRateLimiter auth_limiter_;
  RateLimitedLog auth_failure_log_{std::chrono::seconds(5)};
  RateLimitedLog auth_refusal_log_{std::chrono::seconds(5)};
  RateLimitedLog unauthenticated_log_{std::chrono::seconds(5)};
  RateLimitedLog public_refusal_log_{std::chrono::seconds(5)};
};

}  // namespace tunnelkit::zlayer
