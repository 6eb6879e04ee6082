#include "client/quick_tunnel_client.hpp"

#include <sys/utsname.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include "client/edge_stream_server.hpp"
#include "tunnelkit/cloudflare/wire/kjasio/asio_kj_loop.hpp"
#include "tunnelkit/cloudflare/wire/rpc/registration_client.hpp"
#include "tunnelkit/metrics/registry.hpp"
#include "tunnelkit/session/drain.hpp"

namespace tunnelkit::cloudflare {

namespace asio = boost::asio;

namespace {

// A timer used as an event: Wait() returns once Fire() was called.
class Event {
 public:
  explicit Event(asio::io_context& io)
      : timer_(std::make_shared<asio::steady_timer>(io, asio::steady_timer::time_point::max())) {}
  void Fire() {
    fired_ = true;
    timer_->cancel();
  }
  bool fired() const { return fired_; }
  asio::awaitable<void> Wait() {
    while (!fired_) {
      boost::system::error_code ec;
      co_await timer_->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
  }
  // Waits at most `d`; true if fired.
  asio::awaitable<bool> WaitFor(std::chrono::milliseconds d) {
    asio::steady_timer limit(timer_->get_executor(), d);
    auto timed_out = std::make_shared<bool>(false);
    // The limit's handler may already be queued when this frame ends (limit.cancel() cannot
    // recall it) and then runs after the Event may be gone: it holds the timer weakly, not
    // `this`.
    limit.async_wait([weak = std::weak_ptr<asio::steady_timer>(timer_),
                      timed_out](const boost::system::error_code& ec) {
      if (ec) return;
      *timed_out = true;
      if (auto timer = weak.lock()) timer->cancel();
    });
    while (!fired_ && !*timed_out) {
      boost::system::error_code ec;
      co_await timer_->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    limit.cancel();
    co_return fired_;
  }

 private:
  std::shared_ptr<asio::steady_timer> timer_;
  bool fired_ = false;
};

std::string Arch() {
  utsname u{};
  std::string machine = uname(&u) == 0 ? u.machine : "unknown";
  if (machine == "x86_64") machine = "amd64";
  if (machine == "aarch64") machine = "arm64";
  return "linux_" + machine;
}

std::string Box(const std::vector<std::string>& lines) {
  std::size_t width = 0;
  for (const auto& l : lines) width = std::max(width, l.size());
  std::string border = "+" + std::string(width + 4, '-') + "+";
  std::string out = border + "\n";
  for (const auto& l : lines) out += "|  " + l + std::string(width - l.size(), ' ') + "  |\n";
  return out + border;
}

}  // namespace

session::BackoffPolicy DefaultEdgeBackoff() {
  session::BackoffPolicy policy;
  policy.base = std::chrono::seconds(1);
  policy.factor = 2;
  policy.cap = std::chrono::seconds(32);
  policy.jitter = 1.0;      // full jitter: uniform in (0, 2^k s]
  policy.max_attempts = 0;  // counted by the client against `retries`
  return policy;
}

struct QuickTunnelClient::Impl : std::enable_shared_from_this<QuickTunnelClient::Impl> {
  Impl(asio::io_context& io, QuickTunnelClientOptions options, origin::OriginProxy& proxy,
       metrics::Registry* registry, std::shared_ptr<spdlog::logger> logger,
       std::function<void(const std::string&)> print)
      : io(io),
        options(std::move(options)),
        proxy(proxy),
        log(std::move(logger)),
        print(std::move(print)),
        stop(io),
        unregistered(io),
        drained(io),
        drain(io.get_executor()) {
    if (registry != nullptr) {
      const std::string& t = this->options.tunnel_label;
      connections_gauge = registry
                              ->AddGauge("tunnelkit_edge_connections",
                                         "Connections registered with the edge", {"tunnel"})
                              .With({t});
      reconnects =
          &registry->AddCounter("tunnelkit_edge_reconnects_total",
                                "Reconnect attempts per HA connection", {"tunnel", "conn_index"});
      register_failures = registry
                              ->AddCounter("tunnelkit_edge_register_failures_total",
                                           "Failed dials and refused registrations", {"tunnel"})
                              .With({t});
      stream_metrics.tunnel = t;
      stream_metrics.streams = &registry->AddCounter(
          "tunnelkit_streams_total", "Streams opened by the edge", {"tunnel", "type"});
      stream_metrics.responses = &registry->AddCounter(
          "tunnelkit_responses_total", "Origin responses by status code", {"tunnel", "code"});
      stream_metrics.stream_errors =
          registry
              ->AddCounter("tunnelkit_stream_errors_total", "Streams refused, failed or cut short",
                           {"tunnel"})
              .With({t});
      stream_metrics.active_streams =
          registry->AddGauge("tunnelkit_active_streams", "Streams in flight", {"tunnel"}).With({t});
      stream_metrics.bytes_in = registry
                                    ->AddCounter("tunnelkit_received_bytes_total",
                                                 "Bytes from the edge to the origin", {"tunnel"})
                                    .With({t});
      stream_metrics.bytes_out = registry
                                     ->AddCounter("tunnelkit_sent_bytes_total",
                                                  "Bytes from the origin to the edge", {"tunnel"})
                                     .With({t});
      stream_metrics.latency =
          registry
              ->AddHistogram("tunnelkit_request_duration_seconds",
                             "From the edge's stream to the origin's response head", {"tunnel"},
                             metrics::DefaultLatencyBuckets())
              .With({t});
    }
  }

  asio::io_context& io;
  QuickTunnelClientOptions options;
  origin::OriginProxy& proxy;
  std::shared_ptr<spdlog::logger> log;
  std::function<void(const std::string&)> print;
  Event stop;          // Stop() or a fatal error
  Event unregistered;  // after stop: no connection is registered any more
  Event drained;       // after stop: in-flight streams finished (or were cut off)
  session::DrainTracker drain;
  std::unique_ptr<AsioKjLoop> kj_loop;
  std::unique_ptr<EdgeStreamServer> streams;
  QuickTunnel tunnel;
  bool have_tunnel = false;
  Uuid connector_uuid = RandomUuid();
  std::string fatal;  // the first fatal error (one line)
  int fatal_status = 1;
  int running = 0;  // connection coroutines still running
  int ready = 0;    // connections registered right now
  std::unique_ptr<Event> all_done;
  bool first_registered = false;
  std::unique_ptr<Event> first_outcome;
  bool url_file_written = false;
  std::vector<std::size_t> address_of;  // per connection index: index into options.edges
  // Metrics (default handles ignore updates).
  metrics::Gauge connections_gauge;
  metrics::CounterFamily* reconnects = nullptr;
  metrics::Counter register_failures;
  EdgeStreamMetrics stream_metrics;

  std::string LocalConfiguration() const {
    nlohmann::json config = {
        {"__configuration_flags", {{"url", options.origin_url}}},
        {"ingress", nlohmann::json::array({{{"service", options.origin_url}}})},
        {"warp-routing", {{"enabled", false}}},
    };
    return config.dump();
  }

  // Written to a temporary file first and renamed, so a reader never sees half a URL.
  void WriteUrlFile() {
    std::string temp = options.url_file + ".tmp" + std::to_string(::getpid());
    {
      std::ofstream file(temp, std::ios::trunc);
      file << tunnel.PublicUrl() << "\n";
      file.flush();
      if (!file) {
        log->warn("cannot write the URL to {}", options.url_file);
        return;
      }
    }
    std::error_code ec;
    std::filesystem::rename(temp, options.url_file, ec);
    if (ec) {
      log->warn("cannot write the URL to {}: {}", options.url_file, ec.message());
      std::filesystem::remove(temp, ec);
      return;
    }
    url_file_written = true;
  }

  void RemoveUrlFile() {
    if (!url_file_written) return;
    std::error_code ec;
    std::filesystem::remove(options.url_file, ec);
    url_file_written = false;
  }

  void Fatal(const std::string& line, int status) {
    if (fatal.empty()) {
      fatal = line;
      fatal_status = status;
    }
    stop.Fire();
    stop_or_loss_wake();
  }

  void SetReady(int delta) {
    ready += delta;
    connections_gauge.Set(ready);
    if (stop.fired() && ready == 0) unregistered.Fire();
  }

  // The edge address for a connection's next attempt: the next one in the list that no other
  // connection uses, so HA connections stay on distinct edges when there are enough.
  void RotateAddress(int index) {
    std::size_t n = options.edges.size();
    std::size_t current = address_of[static_cast<std::size_t>(index)];
    for (std::size_t k = 1; k < n; ++k) {
      std::size_t candidate = (current + k) % n;
      bool used = false;
      for (std::size_t i = 0; i < address_of.size(); ++i) {
        if (static_cast<int>(i) != index && address_of[i] == candidate) used = true;
      }
      if (!used) {
        address_of[static_cast<std::size_t>(index)] = candidate;
        return;
      }
    }
  }

  void AcceptStreams(EdgeLink& link, int index) {
    std::weak_ptr<Impl> weak = shared_from_this();
    link.SetStreamHandler([weak, index](std::shared_ptr<Stream> stream) {
      auto impl = weak.lock();
      if (!impl || !impl->streams) {
        stream->Reset();
        return;
      }
      asio::co_spawn(impl->io, ServeStream(impl, std::move(stream), index), asio::detached);
    });
  }

  // Serve's frame uses the stream server, the KJ loop and the drain tracker, all owned here:
  // the frame holds the Impl so that none of them can go away while it is suspended.
  static asio::awaitable<void> ServeStream(std::shared_ptr<Impl> impl,
                                           std::shared_ptr<Stream> stream, int index) {
    co_await impl->streams->Serve(std::move(stream), index);
  }

  // How one attempt of a connection ended, and what the next one does.
  struct AttemptOutcome {
    std::string failure;  // empty: stopped after a registered connection
    bool permanent = false;
    bool rotate = false;  // try the next edge address
    bool registered = false;
    std::optional<std::chrono::milliseconds> retry_after;  // the edge asked for this delay
  };

  RegistrationRequest MakeRegistrationRequest(const EdgeLink& link, int index, int attempts) {
    RegistrationRequest request;
    request.credentials = tunnel.credentials;
    request.conn_index = static_cast<std::uint8_t>(index);
    request.options.client.client_id = connector_uuid;
    request.options.client.features = DefaultClientFeatures();
    request.options.client.version = TUNNELKIT_VERSION_STRING;
    request.options.client.arch = Arch();
    request.options.origin_local_ip = IpTo16Bytes(link.RemoteIp());
    request.options.replace_existing = attempts > 0;
    request.options.num_previous_attempts = static_cast<std::uint8_t>(std::min(attempts, 255));
    return request;
  }

  // The edge refused a registration: retried or not, and when.
  void OnRefused(const RegistrationResult& result, int index, bool registered_before,
                 AttemptOutcome& outcome) {
    outcome.failure =
        "the edge refused connection " + std::to_string(index) + ": " + result.error.cause;
    // A duplicate connection (EDUPCONN) on an index this process registered before is the edge
    // still holding our own registration from a path that died one way: it goes when the edge
    // notices, so it is retried. On a fresh index it is another connector's, and the edge's
    // "do not retry" stands.
    const bool own_duplicate =
        registered_before && result.error.cause.find("EDUPCONN") != std::string::npos;
    outcome.permanent = !result.error.should_retry && !own_duplicate;
    if (result.error.should_retry && result.error.retry_after_ns > 0) {
      outcome.retry_after = std::chrono::milliseconds(result.error.retry_after_ns / 1000000);
    }
  }

  // A registered connection: announced, then held until stop (unregistered and drained) or
  // until its control stream ends (a loss).
  asio::awaitable<void> HoldRegistered(RegistrationClient& rpc, EdgeLink& link,
                                       const EdgeAddress& address, const RegistrationResult& result,
                                       int index, AttemptOutcome& outcome) {
    const std::string index_text = std::to_string(index);
    SetReady(+1);
    // The URL file first: whoever sees the "registered" line may read it at once.
    if (index == 0 && !first_registered && !options.url_file.empty()) WriteUrlFile();
    print("connection " + index_text + " registered: location=" + result.details.location +
          " connection=" + FormatUuid(result.details.uuid) + " edge=" + address.Describe());
    log->info("registered tunnel connection conn_index={} connection={} location={} edge={}", index,
              FormatUuid(result.details.uuid), result.details.location, address.Describe());
    if (index == 0 && !first_registered) {
      first_registered = true;
      first_outcome->Fire();
      try {
        co_await rpc.UpdateLocalConfiguration(LocalConfiguration());
      } catch (const std::exception& e) {
        log->warn("updateLocalConfiguration failed: {}", e.what());
      }
    }
    auto lost = std::make_shared<bool>(false);
    std::weak_ptr<Impl> weak = shared_from_this();
    // The watcher outlives this frame (the RPC connection may end after the coroutine moved
    // on): it owns copies of what it touches, never references into the frame.
    kj_loop->WhenSettled(rpc.OnDisconnect(), [lost, weak] {
      *lost = true;
      if (auto impl = weak.lock()) impl->stop_or_loss_wake();
    });
    while (!stop.fired() && !*lost) co_await WaitWake();
    if (stop.fired() && !*lost) {
      // Unregistering first makes the edge stop sending new requests here; the requests in
      // flight keep the connection until they are drained.
      try {
        co_await rpc.Unregister(options.rpc_timeout);
        print("connection " + index_text + " unregistered");
        log->info("unregistered tunnel connection conn_index={}", index);
      } catch (const std::exception& e) {
        log->warn("unregisterConnection failed on connection {}: {}", index, e.what());
      }
      SetReady(-1);
      co_await drained.Wait();
    } else {
      SetReady(-1);
      outcome.failure =
          "connection " + index_text + " to the edge was lost (" + link.Describe() + ")";
      outcome.rotate = true;
    }
  }

  // One attempt on a dialed edge link: register, then hold.
  asio::awaitable<void> RunLink(EdgeLink& link, const EdgeAddress& address, int index, int attempts,
                                bool& registered_before, session::Backoff& backoff,
                                AttemptOutcome& outcome) {
    AcceptStreams(link, index);
    try {
      auto control = co_await link.OpenControlStream();
      RegistrationClient rpc(*kj_loop, control, options.rpc_timeout);
      RegistrationRequest request = MakeRegistrationRequest(link, index, attempts);
      RegistrationResult result = co_await rpc.Register(request);
      if (!result.registered) {
        OnRefused(result, index, registered_before, outcome);
        co_return;
      }
      outcome.registered = true;
      registered_before = true;
      backoff.Reset();
      co_await HoldRegistered(rpc, link, address, result, index, outcome);
    } catch (const std::exception& e) {
      outcome.failure = "connection " + std::to_string(index) + " failed: " + e.what();
      outcome.rotate = true;
    }
  }

  // One HA connection: dial, register, serve, hold until stop or loss; redial with backoff.
  asio::awaitable<void> Connection(int index) {
    auto self = shared_from_this();
    session::Backoff backoff(options.backoff);
    int attempts = 0;
    bool registered_before = false;  // this index was ours at the edge once in this process
    std::string index_text = std::to_string(index);
    while (!stop.fired()) {
      const EdgeAddress address = options.edges[address_of[static_cast<std::size_t>(index)]];
      std::unique_ptr<EdgeLink> link;
      AttemptOutcome outcome;
      try {
        link = co_await DialEdge(io.get_executor(), address, options.dial);
      } catch (const std::exception& e) {
        outcome.failure = "cannot connect to the edge at " + address.Describe() + ": " + e.what();
        // A certificate the client does not trust will not become trusted by retrying.
        outcome.permanent = std::string(e.what()).find("TLS") != std::string::npos;
        outcome.rotate = true;
      }
      if (link) {
        co_await RunLink(*link, address, index, attempts, registered_before, backoff, outcome);
        if (outcome.registered) attempts = 0;
        link->Close();
        if (outcome.registered && stop.fired()) break;
      }
      if (stop.fired()) break;
      register_failures.Inc();
      if (outcome.permanent) {
        Fatal(outcome.failure, kExitPermanent);
        break;
      }
      if (attempts >= options.retries) {
        Fatal(outcome.failure + " (gave up after " + std::to_string(attempts) + " retries)",
              kExitAttemptsExhausted);
        break;
      }
      ++attempts;
      if (reconnects) reconnects->With({options.tunnel_label, index_text}).Inc();
      if (outcome.rotate) RotateAddress(index);
      auto delay =
          outcome.retry_after ? *outcome.retry_after : backoff.Next().value_or(options.backoff.cap);
      log->warn("{}; retrying connection {} in {} ms (retry {} of {})", outcome.failure, index,
                delay.count(), attempts, options.retries);
      if (co_await stop.WaitFor(delay)) break;
    }
    if (index == 0) first_outcome->Fire();
    if (--running == 0) all_done->Fire();
  }

  // Connection coroutines sleep here; woken on stop and on any connection loss.
  std::unique_ptr<asio::steady_timer> wake;
  void stop_or_loss_wake() {
    if (wake) wake->cancel();
  }
  asio::awaitable<void> WaitWake() {
    // The expiry stays at max: cancel() wakes every waiter without re-arming anything.
    boost::system::error_code ec;
    co_await wake->async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }

  asio::awaitable<int> Run() {
    auto self = shared_from_this();
    kj_loop = std::make_unique<AsioKjLoop>(io);
    kj_loop->SetTaskErrorHandler([this](const kj::Exception& e) {
      log->debug("rpc task failed: {}", e.getDescription().cStr());
    });
    EdgeStreamServer::Options stream_options;
    stream_options.rpc_timeout = options.rpc_timeout;
    streams = std::make_unique<EdgeStreamServer>(proxy, *kj_loop, drain, stream_metrics, log,
                                                 stream_options);
    wake = std::make_unique<asio::steady_timer>(io, asio::steady_timer::time_point::max());
    all_done = std::make_unique<Event>(io);
    first_outcome = std::make_unique<Event>(io);
    int status = co_await RunInner();
    RemoveUrlFile();
    wake.reset();
    co_return status;
  }

  asio::awaitable<int> RunInner() {
    if (options.edges.empty()) {
      EdgeRegions regions;
      try {
        regions = co_await DiscoverEdges(io.get_executor(), options.discovery);
      } catch (const std::exception& e) {
        log->error("edge discovery failed: {} (pass --edge HOST:PORT to skip it)", e.what());
        co_return 1;
      }
      // Alternate regions so consecutive connection indexes land in different regions.
      for (std::size_t i = 0; i < std::max(regions.region1.size(), regions.region2.size()); ++i) {
        for (const auto* region : {&regions.region1, &regions.region2}) {
          if (i >= region->size()) continue;
          EdgeAddress address;
          address.host = (*region)[i].address().to_string();
          address.port = std::to_string((*region)[i].port());
          options.edges.push_back(address);
        }
      }
      log->info("edge discovery: {} addresses in region1, {} in region2", regions.region1.size(),
                regions.region2.size());
    }
    try {
      tunnel = co_await RequestQuickTunnel(io.get_executor(), options.api);
      have_tunnel = true;
    } catch (const std::exception& e) {
      log->error("{}", e.what());
      co_return 1;
    }
    log->info("quick tunnel {} created: {}", FormatUuid(tunnel.credentials.tunnel_id),
              tunnel.hostname);
    if (stop.fired()) co_return 0;
    print(Box(
        {"Your quick tunnel has been created! Visit it at (it may take some time to be reachable):",
         tunnel.PublicUrl()}));
    int count = std::max(1, options.ha_connections);
    for (int i = 0; i < count; ++i)
      address_of.push_back(static_cast<std::size_t>(i) % options.edges.size());
    running = count;
    asio::co_spawn(io, Connection(0), asio::detached);
    co_await first_outcome->Wait();
    for (int i = 1; i < count; ++i) {
      if (stop.fired() || !first_registered) {
        running -= count - i;
        break;
      }
      // cloudflared starts the other connections at 1 s intervals after index 0 registered.
      if (co_await stop.WaitFor(std::chrono::milliseconds(1000))) {
        running -= count - i;
        break;
      }
      asio::co_spawn(io, Connection(i), asio::detached);
    }
    if (running == 0) all_done->Fire();
    co_await stop.Wait();
    if (fatal.empty()) {
      // Graceful: the edge learns first (unregistration), then in-flight requests finish.
      if (ready > 0) co_await unregistered.WaitFor(options.rpc_timeout + std::chrono::seconds(1));
      auto started = std::chrono::steady_clock::now();
      std::size_t in_flight = drain.in_flight();
      auto result = co_await drain.Drain(options.grace_period);
      if (in_flight > 0 || result.cut_off > 0) {
        log->info("drained {} request(s) in {} ms; {} cut off at the grace period", in_flight,
                  std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - started)
                      .count(),
                  result.cut_off);
      }
    }
    drained.Fire();
    co_await all_done->Wait();
    if (!fatal.empty()) {
      log->error("{}", fatal);
      co_return fatal_status;
    }
    co_return 0;
  }
};

QuickTunnelClient::QuickTunnelClient(asio::io_context& io, QuickTunnelClientOptions options,
                                     origin::OriginProxy& proxy, metrics::Registry* metrics,
                                     std::shared_ptr<spdlog::logger> logger,
                                     std::function<void(const std::string&)> print)
    : impl_(std::make_shared<Impl>(io, std::move(options), proxy, metrics, std::move(logger),
                                   std::move(print))) {}

QuickTunnelClient::~QuickTunnelClient() = default;

asio::awaitable<int> QuickTunnelClient::Run() {
  co_return co_await impl_->Run();
}

void QuickTunnelClient::Stop() {
  impl_->stop.Fire();
  impl_->stop_or_loss_wake();
}

int QuickTunnelClient::ready_connections() const {
  return impl_->ready;
}

std::string QuickTunnelClient::hostname() const {
  return impl_->have_tunnel ? impl_->tunnel.hostname : std::string();
}

std::string QuickTunnelClient::connector_id() const {
  return FormatUuid(impl_->connector_uuid);
}

}  // namespace tunnelkit::cloudflare
