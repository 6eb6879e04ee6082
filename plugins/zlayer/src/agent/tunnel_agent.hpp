// `tunnelctl link --backend zlayer`: keeps one agent link to a ZLayer-protocol server up.
// Authenticates, registers every service (FIFO replies, as upstream), answers heartbeats,
// and for each Connect dials the local service and attaches a data WebSocket (when the server
// offered tunnelkit's data plane). Reconnects with backoff through session::Supervisor and
// registers again after each reconnect.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <spdlog/fwd.h>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "agent/service_spec.hpp"
#include "codec/messages.hpp"
#include "transport/data_socket.hpp"
#include "transport/ws_loop.hpp"
#include "tunnelkit/session/supervisor.hpp"

namespace tunnelkit::mux {
class MuxStream;
}

namespace tunnelkit::zlayer {

// How the agent carries public connections to the server (the server must agree; else it is
// one data WebSocket per connection):
//   kShared: several connections per data WebSocket (the core multiplexer; a thousand held
//            wss connections cost one TLS session instead of a thousand);
//   kPerConnection: one data WebSocket each (on plain ws the kernel moves payload with
//            splice(2), and each connection has TCP's own flow control);
//   kAuto: shared on wss, per connection on ws.
enum class DataChannels : std::uint8_t { kAuto, kShared, kPerConnection };
// "auto", "shared", "per-connection"; nullopt for anything else.
std::optional<DataChannels> ParseDataChannels(std::string_view text);

struct AgentOptions {
  std::string name = "zlayer link";
  transport::WsUrl server;
  std::string token;  // never logged
  std::vector<ServiceSpec> services;
  transport::WsClientOptions tls;
  std::string local_host = "127.0.0.1";
  // ZLayer's agent: 5 s doubling to 60 s; ours adds jitter and resets after a healthy session.
  session::BackoffPolicy backoff{
      std::chrono::milliseconds(5000), 2.0, std::chrono::milliseconds(60000), 0.2, 0,
      std::chrono::milliseconds(30000)};
  std::chrono::milliseconds auth_timeout{10000};
  // No message from the server for this long (heartbeats come every 30 s) ends the session.
  std::chrono::milliseconds server_silence{90000};
  std::chrono::milliseconds local_connect_timeout{10000};
  std::chrono::milliseconds udp_idle_timeout{60000};
  DataChannels data_channels = DataChannels::kAuto;
  // Public connections one shared data WebSocket carries at most; beyond it another opens.
  std::size_t shared_max_streams = 1024;
  // Per-connection data WebSockets being dialed at once (TCP connect to the server's upgrade
  // response); more Connects wait for a slot. Until the server has read an upgrade's head it
  // counts against this agent's address among the connections before authentication (16 per
  // source by default): a burst of public connections must not fill that budget by itself.
  // 0: no cap.
  std::size_t max_data_dials = 8;
};

// What one registration produced (for printing and the admin view).
struct RegisteredService {
  ServiceSpec spec;
  bool ok = false;
  std::uint16_t public_port = 0;  // 0 when the server did not say (upstream server)
  std::string error;
};

class TunnelAgent {
 public:
  TunnelAgent(boost::asio::io_context& io, AgentOptions options,
              std::shared_ptr<spdlog::logger> logger);
  ~TunnelAgent();
  TunnelAgent(const TunnelAgent&) = delete;
  TunnelAgent& operator=(const TunnelAgent&) = delete;

  // Starts the WebSocket client thread; false with a reason (unreadable --tls-ca...).
  bool Start(std::string& error);
  // Runs the supervisor until Stop(), a permanent failure, or exhausted retries.
  boost::asio::awaitable<session::SupervisorResult> Run();
  void Stop();

  session::Supervisor& supervisor() { return *supervisor_; }
  const std::vector<RegisteredService>& registered() const { return registered_; }
  // Called after every complete registration round (tests, admin).
  void OnRegistered(std::function<void(const std::vector<RegisteredService>&)> callback) {
    on_registered_ = std::move(callback);
  }

 private:
  struct SessionState;
  struct SharedChannels;
  struct DialSlots;
  boost::asio::awaitable<session::SessionOutcome> RunSession(session::SessionControl& control);
  // RunSession's parts. Auth and its reply: the session's state, or null with `failure`.
  boost::asio::awaitable<std::shared_ptr<SessionState>> Authenticate(
      std::shared_ptr<transport::WsConnection> conn, bool offer_shared,
      std::optional<session::SessionOutcome>& failure);
  std::shared_ptr<SessionState> NewSessionState(
      const std::shared_ptr<transport::WsConnection>& conn, const codec::AuthOk& ok,
      bool offer_shared);
  // One message from the server: false when it ends the session (`end_reason` set).
  bool OnServerMessage(const std::shared_ptr<SessionState>& state, session::SessionControl& control,
                       const codec::Message& message, std::string& end_reason);
  bool OnRegisterReply(SessionState& state, session::SessionControl& control,
                       const codec::Message& message, std::string& end_reason);
  // Every Register answered: the link counts as connected.
  void FinishRegistration(SessionState& state, session::SessionControl& control);
  // Closes the control connection when the server says nothing for server_silence.
  boost::asio::awaitable<void> WatchServerSilence(
      std::shared_ptr<boost::asio::steady_timer> watchdog,
      std::shared_ptr<transport::WsConnection> conn,
      const std::chrono::steady_clock::time_point& last_rx, bool& silent);
  // A stream for `connection` on the current shared data WebSocket, opening one if there is
  // none, it is full or it closed. Null with `error` when no socket could be opened.
  boost::asio::awaitable<std::shared_ptr<mux::MuxStream>> OpenSharedStream(
      std::shared_ptr<SessionState> state, codec::Uuid connection, std::string& error);
  boost::asio::awaitable<void> ServeConnect(std::shared_ptr<SessionState> state,
                                            codec::Connect connect);
  // A per-connection data WebSocket attached to `connect` (a dial slot held while dialing); null
  // when the agent is gone or it failed (ConnectFail sent).
  boost::asio::awaitable<std::shared_ptr<transport::DataSocket>> OpenDataSocket(
      std::shared_ptr<SessionState> state, codec::Connect connect, std::string service_name);
  boost::asio::awaitable<void> ServeSharedConnect(std::shared_ptr<SessionState> state,
                                                  codec::Connect connect);

  boost::asio::io_context& io_;
  AgentOptions options_;
  std::shared_ptr<spdlog::logger> log_;
  transport::WsLoop loop_;                               // the control connection (libwebsockets)
  std::shared_ptr<boost::asio::ssl::context> data_tls_;  // wss data connections
  // Live data sockets, closed when the agent goes away.
  std::map<transport::DataSocket*, std::weak_ptr<transport::DataSocket>> live_data_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::shared_ptr<DialSlots> dial_slots_;  // max_data_dials
  std::unique_ptr<session::Supervisor> supervisor_;
  std::vector<RegisteredService> registered_;
  std::function<void(const std::vector<RegisteredService>&)> on_registered_;
};

}  // namespace tunnelkit::zlayer
