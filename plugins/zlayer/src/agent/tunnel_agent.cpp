#include "agent/tunnel_agent.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <map>

#include "codec/codec.hpp"
#include "codec/extension.hpp"
#include "codec/mux_codec.hpp"
#include "transport/control_send.hpp"
#include "transport/data_channel.hpp"
#include "transport/data_link.hpp"
#include "transport/data_splice.hpp"
#include "transport/data_stream.hpp"
#include "transport/mux_splice.hpp"
#include "tunnelkit/mux/session.hpp"
#include "tunnelkit/mux/wake_signal.hpp"
#include "tunnelkit/stream/socket_stream.hpp"
#include "tunnelkit/stream/splice.hpp"
#include "tunnelkit/stream/tls_context.hpp"
#include "util/random.hpp"

namespace tunnelkit::zlayer {

namespace asio = boost::asio;
using asio::ip::udp;
using transport::SendControl;
using transport::WsConnection;

namespace {

const char* KindName(codec::ServiceProtocol protocol) {
  return protocol == codec::ServiceProtocol::kUdp ? "udp" : "tcp";
}

// The datagrams of one UDP flow both ways between the service's connected socket and the data
// WebSocket, until the flow is idle for `idle_timeout` or either side closes.
asio::awaitable<void> RelayUdpFlow(std::shared_ptr<udp::socket> socket,
                                   std::shared_ptr<transport::DataSocket> data,
                                   std::chrono::milliseconds idle_timeout) {
  const auto executor = socket->get_executor();
  auto last =
      std::make_shared<std::chrono::steady_clock::time_point>(std::chrono::steady_clock::now());
  auto ended = std::make_shared<bool>(false);
  asio::co_spawn(
      executor,
      [socket, data, last, ended]() -> asio::awaitable<void> {
        std::vector<std::uint8_t> buffer(65536);
        static constexpr std::uint8_t kDatagram[1] = {
            static_cast<std::uint8_t>(codec::DataFrameKind::kDatagram)};
        for (;;) {
          boost::system::error_code rec;
          const std::size_t n = co_await socket->async_receive(
              asio::buffer(buffer), asio::redirect_error(asio::use_awaitable, rec));
          if (rec == asio::error::operation_aborted || rec == asio::error::bad_descriptor ||
              *ended) {
            co_return;
          }
          if (rec) continue;  // connection refused from a previous send: the service may come back
          *last = std::chrono::steady_clock::now();
          if (co_await data->WriteMessage(asio::buffer(kDatagram), asio::buffer(buffer.data(), n)))
            co_return;
        }
      },
      asio::detached);
  auto idle = std::make_shared<asio::steady_timer>(executor);
  asio::co_spawn(
      executor,
      [idle, data, last, ended, timeout = idle_timeout]() -> asio::awaitable<void> {
        for (;;) {
          idle->expires_at(*last + timeout);
          boost::system::error_code iec;
          co_await idle->async_wait(asio::redirect_error(asio::use_awaitable, iec));
          if (iec || *ended) co_return;
          if (std::chrono::steady_clock::now() - *last >= timeout) {
            data->Close();
            co_return;
          }
        }
      },
      asio::detached);
  boost::system::error_code rec;
  while (auto message =
             co_await transport::ReadDataMessage(*data, transport::kMaxDataMessage, rec)) {
    const auto frame = codec::DecodeDataFrame(*message);
    if (!frame.ok || frame.frame.kind != codec::DataFrameKind::kDatagram) break;
    *last = std::chrono::steady_clock::now();
    boost::system::error_code sec;
    co_await socket->async_send(
        asio::buffer(frame.frame.payload.data(), frame.frame.payload.size()),
        asio::redirect_error(asio::use_awaitable, sec));
  }
  *ended = true;
  data->Close();
  idle->cancel();
  boost::system::error_code cec;
  socket->close(cec);
}

}  // namespace

std::optional<DataChannels> ParseDataChannels(std::string_view text) {
  if (text == "auto") return DataChannels::kAuto;
  if (text == "shared") return DataChannels::kShared;
  if (text == "per-connection") return DataChannels::kPerConnection;
  return std::nullopt;
}

// The shared data WebSockets of one control session: the current one takes new streams.
struct TunnelAgent::SharedChannels {
  explicit SharedChannels(const asio::any_io_executor& executor) : dialed(executor) {}
  std::shared_ptr<mux::MuxSession> current;
  std::vector<std::weak_ptr<mux::MuxSession>> all;  // closed when the control session ends
  bool dialing = false;                             // one dial at a time; others wait for it
  mux::WakeSignal dialed;
};

// Per-connection data dials in flight (AgentOptions::max_data_dials). Shared with the dialing
// coroutines, which may outlive the agent.
struct TunnelAgent::DialSlots {
  DialSlots(const asio::any_io_executor& executor, std::size_t max) : max(max), freed(executor) {}
  std::size_t max;
  std::size_t in_flight = 0;
  mux::WakeSignal freed;
};

struct TunnelAgent::SessionState {
  std::shared_ptr<WsConnection> control;
  codec::Uuid tunnel_id;
  bool extended = false;
  bool shared = false;  // the server accepted shared data channels
  std::array<std::uint8_t, 16> data_secret{};
  std::map<codec::Uuid, ServiceSpec> services;  // by service_id
  std::shared_ptr<SharedChannels> channels;
  // Register replies come in the order of AgentOptions::services.
  std::size_t next_reply = 0;
  std::vector<RegisteredService> registered;
};

TunnelAgent::TunnelAgent(asio::io_context& io, AgentOptions options,
                         std::shared_ptr<spdlog::logger> logger)
    : io_(io),
      options_(std::move(options)),
      log_(std::move(logger)),
      loop_(io),
      dial_slots_(std::make_shared<DialSlots>(io.get_executor(), options_.max_data_dials)) {
  session::Supervisor::Options sup;
  sup.name = options_.name;
  sup.backoff = options_.backoff;
  sup.logger = log_;
  supervisor_ = std::make_unique<session::Supervisor>(
      io_.get_executor(), sup,
      [this](session::SessionControl& control) { return RunSession(control); });
}

TunnelAgent::~TunnelAgent() {
  *alive_ = false;
  for (auto& [raw, weak] : live_data_) {
    if (auto data = weak.lock()) data->Close();
  }
  loop_.Stop();
}

bool TunnelAgent::Start(std::string& error) {
  if (options_.server.tls && options_.tls.tls_skip_verify) {
    log_->warn(
        "{}: TLS certificate verification is OFF (--tls-skip-verify): anyone on the path "
        "can impersonate {}",
        options_.name, options_.server.host);
  }
  if (options_.server.tls) {
    try {
      TlsClientOptions tls;
      tls.ca_file = options_.tls.tls_ca;
      tls.insecure_skip_verify = options_.tls.tls_skip_verify;
      data_tls_ = MakeTlsClientContext(tls);
    } catch (const std::exception& e) {
      error = e.what();
      return false;
    }
  }
  // A ws:// agent needs no client TLS context (creating one costs ~100 ms per agent).
  transport::WsClientOptions client = options_.tls;
  client.tls = options_.server.tls;
  return loop_.Start(std::nullopt, nullptr, client, error);
}

asio::awaitable<session::SupervisorResult> TunnelAgent::Run() {
  auto result = co_await supervisor_->Run();
  co_return result;
}

void TunnelAgent::Stop() {
  supervisor_->Stop();
}

asio::awaitable<std::shared_ptr<TunnelAgent::SessionState>> TunnelAgent::Authenticate(
    std::shared_ptr<WsConnection> conn, bool offer_shared,
    std::optional<session::SessionOutcome>& failure) {
  const std::uint8_t features = offer_shared ? codec::kFeatureSharedDataChannels : 0;
  codec::Auth auth{options_.token, RandomUuidV4(),
                   codec::EncodeAgentHello({codec::kExtensionVersion, features})};
  SendControl(conn, auth);

  asio::steady_timer auth_deadline(io_, options_.auth_timeout);
  bool auth_timed_out = false;
  auth_deadline.async_wait([conn, &auth_timed_out](boost::system::error_code ec) {
    if (!ec) {
      auth_timed_out = true;
      conn->Close();
    }
  });
  auto reply = co_await conn->Receive();
  auth_deadline.cancel();
  if (!reply) {
    failure = session::SessionOutcome::Transient(
        auth_timed_out ? "no authentication reply within the timeout"
                       : "connection closed during authentication: " + conn->close_reason());
    co_return nullptr;
  }
  const auto decoded = codec::Decode(*reply);
  if (!decoded.ok) {
    conn->Close();
    failure =
        session::SessionOutcome::Transient("malformed authentication reply: " + decoded.error);
    co_return nullptr;
  }
  if (const auto* fail = std::get_if<codec::AuthFail>(&decoded.message)) {
    conn->Close();
    log_->error("{}: authentication failed: {}", options_.name, fail->reason);
    // Only the token validator's verdicts ("Authentication error: invalid tunnel token",
    // "... expired", "... cannot be empty") are final. "Token already in use" clears once the
    // server notices the previous session is gone; "server shutting down" once it is back.
    failure = fail->reason.rfind("Authentication error:", 0) == 0
                  ? session::SessionOutcome::Permanent("authentication failed: " + fail->reason)
                  : session::SessionOutcome::Transient("authentication failed: " + fail->reason);
    co_return nullptr;
  }
  const auto* ok = std::get_if<codec::AuthOk>(&decoded.message);
  if (ok == nullptr) {
    conn->Close();
    failure = session::SessionOutcome::Transient(
        "expected AuthOk, got " +
        std::string(codec::MessageTypeName(codec::TypeOf(decoded.message))));
    co_return nullptr;
  }
  co_return NewSessionState(conn, *ok, offer_shared);
}

std::shared_ptr<TunnelAgent::SessionState> TunnelAgent::NewSessionState(
    const std::shared_ptr<WsConnection>& conn, const codec::AuthOk& ok, bool offer_shared) {
  auto state = std::make_shared<SessionState>();
  state->control = conn;
  state->tunnel_id = ok.tunnel_id;
  std::string plane_note = "; upstream server: control channel only, no data plane";
  if (const auto hello = codec::DecodeServerHello(ok.trailer)) {
    if (hello->version >= codec::kExtensionVersion) {
      state->extended = true;
      state->data_secret = hello->data_secret;
      state->shared = offer_shared && (hello->features & codec::kFeatureSharedDataChannels) != 0;
      plane_note = state->shared ? "; shared data channels"
                   : offer_shared
                       ? "; the server does not share data WebSockets: one per connection"
                       : "";
      if (state->shared) state->channels = std::make_shared<SharedChannels>(io_.get_executor());
    } else {
      plane_note = "; the server speaks tunnelkit data plane v" + std::to_string(hello->version) +
                   ", this agent needs v" + std::to_string(codec::kExtensionVersion) +
                   ": control channel only (upgrade the server)";
    }
  }
  log_->info("{}: authenticated to {} (tunnel {}{})", options_.name, options_.server.ToString(),
             state->tunnel_id.ToString(), plane_note);
  return state;
}

void TunnelAgent::FinishRegistration(SessionState& state, session::SessionControl& control) {
  registered_ = state.registered;
  std::size_t good = 0;
  for (const auto& r : state.registered) good += r.ok ? 1 : 0;
  control.MarkConnected("tunnel " + state.tunnel_id.ToString() + ", " + std::to_string(good) + "/" +
                        std::to_string(state.registered.size()) + " services registered");
  if (on_registered_) on_registered_(registered_);
}

bool TunnelAgent::OnRegisterReply(SessionState& state, session::SessionControl& control,
                                  const codec::Message& message, std::string& end_reason) {
  const auto* reg_ok = std::get_if<codec::RegisterOk>(&message);
  if (state.next_reply >= options_.services.size()) {
    end_reason = reg_ok != nullptr ? "RegisterOk without a pending Register"
                                   : "RegisterFail without a pending Register";
    return false;
  }
  const auto& spec = options_.services[state.next_reply++];
  if (reg_ok != nullptr) {
    RegisteredService r{spec, true, 0, ""};
    if (const auto extra = codec::DecodeRegisterExtra(reg_ok->trailer)) {
      r.public_port = extra->public_port;
    } else {
      r.public_port = spec.remote_port;  // upstream does not send it; the request is all we know
    }
    state.services[reg_ok->service_id] = spec;
    state.registered.push_back(r);
    log_->info("{}: service {} ({}) -> public port {} on {}", options_.name, spec.name,
               KindName(spec.protocol),
               r.public_port != 0 ? std::to_string(r.public_port) : std::string("(not reported)"),
               options_.server.host);
  } else {
    const auto& reg_fail = std::get<codec::RegisterFail>(message);
    state.registered.push_back(RegisteredService{spec, false, 0, reg_fail.reason});
    log_->error("{}: service {} refused: {}", options_.name, spec.name, reg_fail.reason);
  }
  if (state.next_reply == options_.services.size()) FinishRegistration(state, control);
  return true;
}

bool TunnelAgent::OnServerMessage(const std::shared_ptr<SessionState>& state,
                                  session::SessionControl& control, const codec::Message& message,
                                  std::string& end_reason) {
  if (const auto* hb = std::get_if<codec::Heartbeat>(&message)) {
    SendControl(state->control, codec::HeartbeatAck{hb->timestamp_ms});
  } else if (std::holds_alternative<codec::HeartbeatAck>(message)) {
  } else if (std::holds_alternative<codec::RegisterOk>(message) ||
             std::holds_alternative<codec::RegisterFail>(message)) {
    return OnRegisterReply(*state, control, message, end_reason);
  } else if (const auto* connect = std::get_if<codec::Connect>(&message)) {
    const auto service = state->services.find(connect->service_id);
    if (state->shared && service != state->services.end() &&
        service->second.protocol == codec::ServiceProtocol::kTcp) {
      asio::co_spawn(io_, ServeSharedConnect(state, *connect), asio::detached);
    } else {
      asio::co_spawn(io_, ServeConnect(state, *connect), asio::detached);
    }
  } else if (const auto* disconnect = std::get_if<codec::Disconnect>(&message)) {
    end_reason = "server disconnected: " + disconnect->reason;
    log_->warn("{}: {}", options_.name, end_reason);
    return false;
  } else {
    end_reason = "unexpected " + std::string(codec::MessageTypeName(codec::TypeOf(message))) +
                 " from the server";
    return false;
  }
  return true;
}

asio::awaitable<void> TunnelAgent::WatchServerSilence(
    std::shared_ptr<asio::steady_timer> watchdog, std::shared_ptr<WsConnection> conn,
    const std::chrono::steady_clock::time_point& last_rx, bool& silent) {
  // last_rx and silent live in RunSession's frame, which cancels the watchdog before it ends.
  for (;;) {
    watchdog->expires_at(last_rx + options_.server_silence);
    boost::system::error_code ec;
    co_await watchdog->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (ec || conn->closed()) co_return;
    if (std::chrono::steady_clock::now() - last_rx >= options_.server_silence) {
      silent = true;
      conn->Close();
      co_return;
    }
  }
}

asio::awaitable<session::SessionOutcome> TunnelAgent::RunSession(session::SessionControl& control) {
  std::string error;
  auto conn = co_await loop_.Connect(options_.server, error);
  if (!conn)
    co_return session::SessionOutcome::Transient("cannot connect to " + options_.server.ToString() +
                                                 ": " + error);
  control.OnStop([conn] { conn->Close(); });

  const bool offer_shared = options_.data_channels == DataChannels::kShared ||
                            (options_.data_channels == DataChannels::kAuto && options_.server.tls);
  std::optional<session::SessionOutcome> failure;
  auto state = co_await Authenticate(conn, offer_shared, failure);
  if (!state) co_return std::move(*failure);

  // Register everything back to back; replies come in the same order.
  for (const auto& spec : options_.services) {
    SendControl(conn, codec::Register{spec.name, spec.protocol, spec.local_port, spec.remote_port});
  }
  if (options_.services.empty()) FinishRegistration(*state, control);

  // Server silence watchdog (upstream has none; heartbeats arrive every 30 s).
  auto last_rx = std::chrono::steady_clock::now();
  auto watchdog = std::make_shared<asio::steady_timer>(io_);
  bool silent = false;
  asio::co_spawn(io_, WatchServerSilence(watchdog, conn, last_rx, silent), asio::detached);

  std::string end_reason;
  while (auto bytes = co_await conn->Receive()) {
    last_rx = std::chrono::steady_clock::now();
    const auto decoded = codec::Decode(*bytes);
    if (!decoded.ok) {
      end_reason = "malformed message from the server: " + decoded.error;
      break;
    }
    if (!OnServerMessage(state, control, decoded.message, end_reason)) break;
  }
  watchdog->cancel();
  conn->Close();
  if (state->channels) {
    // Their connections belonged to this session; the next session opens its own.
    for (const auto& weak : state->channels->all) {
      if (auto session = weak.lock()) session->Close("the control connection ended");
    }
    state->channels->current.reset();
  }
  if (end_reason.empty()) {
    end_reason = silent ? "server silent for " +
                              std::to_string(options_.server_silence.count() / 1000) + " s"
                        : "connection lost: " + conn->close_reason();
  }
  if (control.stop_requested()) co_return session::SessionOutcome::Stopped(end_reason);
  co_return session::SessionOutcome::Transient(end_reason);
}

asio::awaitable<std::shared_ptr<transport::DataSocket>> TunnelAgent::OpenDataSocket(
    std::shared_ptr<SessionState> state, codec::Connect connect, std::string service_name) {
  const auto alive = alive_;  // false once the agent is gone
  const auto control = state->control;
  std::string error;
  const auto slots = dial_slots_;
  while (slots->max != 0 && slots->in_flight >= slots->max) co_await slots->freed.Wait();
  if (!*alive) co_return nullptr;
  ++slots->in_flight;
  // Named, not a temporary in the co_await expression (g++ 12).
  std::string link = transport::FormatDataLinkCredential({state->tunnel_id, state->data_secret});
  auto data = co_await transport::DialDataSocket(
      io_.get_executor(), options_.server, data_tls_.get(), options_.local_connect_timeout,
      transport::DataKind::kPerConnection, error, std::move(link));
  --slots->in_flight;
  slots->freed.Notify();
  if (!*alive) co_return nullptr;
  if (!data) {
    log_->warn("{}: {} connection {}: {}", options_.name, service_name,
               connect.connection_id.ToString(), error);
    SendControl(control, codec::ConnectFail{connect.connection_id,
                                            "cannot open a data connection: " + error});
    co_return nullptr;
  }
  const auto attach =
      codec::Encode(codec::DataAttach{state->tunnel_id, connect.connection_id, state->data_secret});
  const bool attach_failed = !attach.ok || co_await data->WriteMessage(asio::buffer(attach.bytes));
  if (!*alive) co_return nullptr;
  if (attach_failed) {
    SendControl(control, codec::ConnectFail{connect.connection_id,
                                            "cannot open a data connection: attach failed"});
    co_return nullptr;
  }
  co_return data;
}

asio::awaitable<void> TunnelAgent::ServeConnect(std::shared_ptr<SessionState> state,
                                                codec::Connect connect) {
  const auto alive = alive_;  // false once the agent is gone
  const auto control = state->control;
  const auto it = state->services.find(connect.service_id);
  if (it == state->services.end()) {
    SendControl(control, codec::ConnectFail{connect.connection_id, "unknown service"});
    co_return;
  }
  const ServiceSpec spec = it->second;
  if (!state->extended) {
    SendControl(control, codec::ConnectFail{connect.connection_id,
                                            "no data plane: the server did not offer one"});
    co_return;
  }
  const std::string local = options_.local_host + ":" + std::to_string(spec.local_port);
  const asio::any_io_executor executor = io_.get_executor();

  std::unique_ptr<TcpStream> tcp;
  std::unique_ptr<udp::socket> udp_socket;
  boost::system::error_code ec;
  if (spec.protocol == codec::ServiceProtocol::kTcp) {
    // Named arguments: g++ 12 mishandles non-trivial temporaries in a co_await expression.
    const std::string port = std::to_string(spec.local_port);
    tcp = co_await ConnectTcpStream(executor, options_.local_host, port,
                                    options_.local_connect_timeout, ec);
  } else {
    udp_socket = std::make_unique<udp::socket>(io_);
    const udp::endpoint target(asio::ip::make_address(options_.local_host, ec), spec.local_port);
    if (!ec) udp_socket->open(target.protocol(), ec);
    if (!ec) udp_socket->connect(target, ec);
  }
  if (!*alive) co_return;
  if (ec) {
    log_->warn("{}: {} connection from {}: cannot reach {}: {}", options_.name, spec.name,
               connect.client_addr, local, ec.message());
    SendControl(control, codec::ConnectFail{connect.connection_id,
                                            "cannot connect to " + local + ": " + ec.message()});
    co_return;
  }
  auto data = co_await OpenDataSocket(state, connect, spec.name);
  if (!data || !*alive) co_return;
  SendControl(control, codec::ConnectAck{connect.connection_id});
  log_->debug("{}: {} connection {} from {} -> {}", options_.name, spec.name,
              connect.connection_id.ToString(), connect.client_addr, local);
  live_data_[data.get()] = data;
  // Nothing below touches `this` after the traffic ends unless the agent still exists.

  if (tcp) {
    transport::DataStream remote(data, "zlayer data " + connect.connection_id.ToString());
    const auto spliced = co_await transport::SpliceData(*tcp, remote, transport::DataSide::kAgent);
    if (spliced.clean) co_await data->Finish();
    data->Close();
    if (*alive) live_data_.erase(data.get());
    co_return;
  }

  // UDP: datagrams both ways until the flow is idle or either side closes.
  auto socket = std::shared_ptr<udp::socket>(std::move(udp_socket));
  co_await RelayUdpFlow(socket, data, options_.udp_idle_timeout);
  if (*alive) live_data_.erase(data.get());
}

// A TCP connection over a shared data WebSocket. Its own coroutine, apart from ServeConnect: a
// held connection keeps this frame alive, so it holds only what the connection needs.
asio::awaitable<void> TunnelAgent::ServeSharedConnect(std::shared_ptr<SessionState> state,
                                                      codec::Connect connect) {
  const auto alive = alive_;
  const auto& spec = state->services.at(connect.service_id);
  const std::string port = std::to_string(spec.local_port);
  boost::system::error_code ec;
  auto tcp = co_await ConnectTcpStream(io_.get_executor(), options_.local_host, port,
                                       options_.local_connect_timeout, ec);
  if (!*alive) co_return;
  if (ec) {
    const std::string local = options_.local_host + ":" + port;
    log_->warn("{}: {} connection from {}: cannot reach {}: {}", options_.name, spec.name,
               connect.client_addr, local, ec.message());
    SendControl(state->control,
                codec::ConnectFail{connect.connection_id,
                                   "cannot connect to " + local + ": " + ec.message()});
    co_return;
  }
  std::shared_ptr<mux::MuxStream> stream;
  {
    std::string error;
    stream = co_await OpenSharedStream(state, connect.connection_id, error);
    if (!*alive) co_return;
    if (!stream) {
      log_->warn("{}: {} connection {}: {}", options_.name, spec.name,
                 connect.connection_id.ToString(), error);
      SendControl(state->control,
                  codec::ConnectFail{connect.connection_id,
                                     "cannot open a shared data connection: " + error});
      co_return;
    }
  }
  SendControl(state->control, codec::ConnectAck{connect.connection_id});
  log_->debug("{}: {} connection {} from {} -> port {} ({})", options_.name, spec.name,
              connect.connection_id.ToString(), connect.client_addr, port, stream->Describe());
  state.reset();  // the session may end while the connection lives on
  connect.client_addr = std::string();
  co_await transport::SpliceMux(*tcp, *stream);
}

asio::awaitable<std::shared_ptr<mux::MuxStream>> TunnelAgent::OpenSharedStream(
    std::shared_ptr<SessionState> state, codec::Uuid connection, std::string& error) {
  const auto alive = alive_;
  const auto channels = state->channels;
  // Two rounds: the current socket, else a new one (or the one another Connect just opened).
  for (int round = 0; round < 3; ++round) {
    while (channels->dialing) {
      co_await channels->dialed.Wait();
      if (!*alive) co_return nullptr;
    }
    if (state->control->closed()) {
      error = "the control connection closed";
      co_return nullptr;
    }
    if (auto session = channels->current;
        session && !session->closed() && session->stream_count() < options_.shared_max_streams) {
      boost::system::error_code ec;
      auto stream = session->Open(mux::Priority::kNormal, connection.bytes, ec);
      if (stream) co_return stream;
    }
    if (round == 2) break;
    channels->dialing = true;
    std::string dial_error;
    std::string link = transport::FormatDataLinkCredential({state->tunnel_id, state->data_secret});
    auto data = co_await transport::DialDataSocket(
        io_.get_executor(), options_.server, data_tls_.get(), options_.local_connect_timeout,
        transport::DataKind::kShared, dial_error, std::move(link));
    if (!*alive) co_return nullptr;
    bool attached = false;
    if (data) {
      const auto attach =
          codec::Encode(codec::DataAttach{state->tunnel_id, codec::Uuid{}, state->data_secret});
      attached = attach.ok;
      if (attached) attached = !(co_await data->WriteMessage(asio::buffer(attach.bytes)));
      if (!*alive) co_return nullptr;
      if (!attached) dial_error = "attaching the shared data connection failed";
    }
    channels->dialing = false;
    channels->dialed.Notify();
    if (!attached) {
      error = dial_error;
      co_return nullptr;
    }
    const std::string label = "zlayer shared data to " + data->peer();
    live_data_[data.get()] = data;
    auto session = mux::MuxSession::Create(
        std::make_unique<transport::DataChannel>(data, label),
        std::make_unique<codec::ZlayerMuxCodec>(),
        transport::SharedChannelConfig(mux::IdParity::kOdd, options_.shared_max_streams, label),
        log_);
    // The session logs why it closed (one line); new Connects then open another socket.
    session->SetClosedHandler([this, alive, raw = data.get()](const std::string&) {
      if (*alive) live_data_.erase(raw);
    });
    session->Start();
    log_->debug("{}: shared data connection to {} open", options_.name, data->peer());
    channels->current = session;
    channels->all.push_back(session);
    std::erase_if(channels->all, [](const auto& weak) { return weak.expired(); });
  }
  error = "no shared data connection takes more streams";
  co_return nullptr;
}

}  // namespace tunnelkit::zlayer
