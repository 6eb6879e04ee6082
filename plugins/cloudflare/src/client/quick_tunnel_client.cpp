#include "client/quick_tunnel_client.hpp"

#include <sys/utsname.h>

#include <cstdio>

#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include "kjasio/asio_kj_loop.hpp"
#include "rpc/registration_client.hpp"

namespace tunnelkit::cloudflare {

namespace asio = boost::asio;

namespace {

// A timer used as an event: Wait() returns once Fire() was called.
class Event {
 public:
  explicit Event(asio::io_context& io) : timer_(io, asio::steady_timer::time_point::max()) {}
  void Fire() {
    fired_ = true;
    timer_.cancel();
  }
  bool fired() const { return fired_; }
  asio::awaitable<void> Wait() {
    while (!fired_) {
      boost::system::error_code ec;
      co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
  }
  // Waits at most `d`; true if fired.
  asio::awaitable<bool> WaitFor(std::chrono::milliseconds d) {
    asio::steady_timer limit(timer_.get_executor(), d);
    auto timed_out = std::make_shared<bool>(false);
    limit.async_wait([this, timed_out](const boost::system::error_code& ec) {
      if (!ec) {
        *timed_out = true;
        timer_.cancel();
      }
    });
    while (!fired_ && !*timed_out) {
      boost::system::error_code ec;
      co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    limit.cancel();
    co_return fired_;
  }

 private:
  asio::steady_timer timer_;
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

struct QuickTunnelClient::Impl : std::enable_shared_from_this<QuickTunnelClient::Impl> {
  Impl(asio::io_context& io, QuickTunnelClientOptions options,
       std::shared_ptr<spdlog::logger> logger, std::function<void(const std::string&)> print)
      : io(io),
        options(std::move(options)),
        log(std::move(logger)),
        print(std::move(print)),
        stop(io) {}

  asio::io_context& io;
  QuickTunnelClientOptions options;
  std::shared_ptr<spdlog::logger> log;
  std::function<void(const std::string&)> print;
  Event stop;
  std::unique_ptr<AsioKjLoop> kj_loop;
  QuickTunnel tunnel;
  Uuid connector_id = RandomUuid();
  std::string fatal;  // the first fatal error (one line)
  int running = 0;    // connection coroutines still running
  std::unique_ptr<Event> all_done;
  bool first_registered = false;
  std::unique_ptr<Event> first_outcome;

  std::string LocalConfiguration() const {
    nlohmann::json config = {
        {"__configuration_flags", {{"url", options.origin_url}}},
        {"ingress", nlohmann::json::array({{{"service", options.origin_url}}})},
        {"warp-routing", {{"enabled", false}}},
    };
    return config.dump();
  }

  void WriteUrlFile() {
    std::FILE* file = std::fopen(options.url_file.c_str(), "w");
    if (file == nullptr) {
      log->warn("cannot write the URL to {}", options.url_file);
      return;
    }
    std::fprintf(file, "%s\n", tunnel.PublicUrl().c_str());
    std::fclose(file);
  }

  void Fatal(const std::string& line) {
    if (fatal.empty()) fatal = line;
    stop.Fire();
  }

  // One HA connection: dial, register, hold until stop or loss (then redial with backoff).
  asio::awaitable<void> Connection(int index) {
    auto self = shared_from_this();
    const EdgeAddress& address =
        options.edges[static_cast<std::size_t>(index) % options.edges.size()];
    std::chrono::milliseconds backoff{1000};
    int attempts = 0;
    while (!stop.fired()) {
      std::unique_ptr<EdgeLink> link;
      std::string failure;
      bool permanent = false;
      try {
        link = co_await DialEdge(io.get_executor(), address, options.dial);
      } catch (const std::exception& e) {
        failure = "cannot connect to the edge at " + address.Describe() + ": " + e.what();
        // A certificate the client does not trust will not become trusted by retrying.
        permanent = std::string(e.what()).find("TLS") != std::string::npos;
      }
      if (link) {
        bool registered = false;
        try {
          auto control = co_await link->OpenControlStream();
          RegistrationClient rpc(*kj_loop, control, options.rpc_timeout);
          RegistrationRequest request;
          request.credentials = tunnel.credentials;
          request.conn_index = static_cast<std::uint8_t>(index);
          request.options.client.client_id = connector_id;
          request.options.client.features = DefaultClientFeatures();
          request.options.client.version = TUNNELKIT_VERSION_STRING;
          request.options.client.arch = Arch();
          request.options.origin_local_ip = IpTo16Bytes(link->RemoteIp());
          request.options.replace_existing = attempts > 0;
          request.options.num_previous_attempts =
              static_cast<std::uint8_t>(std::min(attempts, 255));
          RegistrationResult result = co_await rpc.Register(request);
          if (!result.registered) {
            failure =
                "the edge refused connection " + std::to_string(index) + ": " + result.error.cause;
            permanent = !result.error.should_retry;
            if (result.error.should_retry && result.error.retry_after_ns > 0) {
              backoff = std::chrono::milliseconds(result.error.retry_after_ns / 1000000);
            }
          } else {
            registered = true;
            attempts = 0;
            backoff = std::chrono::milliseconds(1000);
            print("connection " + std::to_string(index) +
                  " registered: location=" + result.details.location +
                  " connection=" + FormatUuid(result.details.uuid) + " edge=" + address.Describe());
            log->info(
                "registered tunnel connection conn_index={} connection={} location={} edge={}",
                index, FormatUuid(result.details.uuid), result.details.location,
                address.Describe());
            if (index == 0) {
              if (!first_registered && !options.url_file.empty()) WriteUrlFile();
              first_registered = true;
              first_outcome->Fire();
              try {
                co_await rpc.UpdateLocalConfiguration(LocalConfiguration());
              } catch (const std::exception& e) {
                log->warn("updateLocalConfiguration failed: {}", e.what());
              }
            }
            // Hold the connection until stop, or until the control stream ends.
            auto lost = std::make_shared<bool>(false);
            std::weak_ptr<Impl> weak = self;
            auto on_lost = [lost, weak] {
              *lost = true;
              if (auto impl = weak.lock()) impl->stop_or_loss_wake();
            };
            kj_loop->AddTask(
                rpc.OnDisconnect().then(on_lost, [on_lost](kj::Exception&&) { on_lost(); }));
            while (!stop.fired() && !*lost) co_await WaitWake();
            if (stop.fired() && !*lost) {
              try {
                co_await rpc.Unregister(options.grace_period);
                print("connection " + std::to_string(index) + " unregistered");
                log->info("unregistered tunnel connection conn_index={}", index);
              } catch (const std::exception& e) {
                log->warn("unregisterConnection failed on connection {}: {}", index, e.what());
              }
            } else {
              failure = "connection " + std::to_string(index) + " to the edge was lost";
            }
          }
        } catch (const std::exception& e) {
          failure = "connection " + std::to_string(index) + " failed: " + e.what();
        }
        link->Close();
        if (registered && stop.fired()) break;
      }
      if (stop.fired()) break;
      ++attempts;
      if (permanent || attempts >= options.max_register_attempts) {
        if (index == 0 && !first_registered) {
          first_outcome->Fire();
          Fatal(failure);
        } else {
          log->error("{} (giving up on this connection)", failure);
        }
        break;
      }
      log->warn("{}; retrying in {} ms", failure, backoff.count());
      if (co_await stop.WaitFor(backoff)) break;
      backoff = std::min(backoff * 2, std::chrono::milliseconds(30000));
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
    wake = std::make_unique<asio::steady_timer>(io, asio::steady_timer::time_point::max());
    all_done = std::make_unique<Event>(io);
    first_outcome = std::make_unique<Event>(io);
    int status = co_await RunInner();
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
    co_await all_done->Wait();
    if (!fatal.empty()) {
      log->error("{}", fatal);
      co_return 1;
    }
    co_return 0;
  }
};

QuickTunnelClient::QuickTunnelClient(asio::io_context& io, QuickTunnelClientOptions options,
                                     std::shared_ptr<spdlog::logger> logger,
                                     std::function<void(const std::string&)> print)
    : impl_(std::make_shared<Impl>(io, std::move(options), std::move(logger), std::move(print))) {}

QuickTunnelClient::~QuickTunnelClient() = default;

asio::awaitable<int> QuickTunnelClient::Run() {
  co_return co_await impl_->Run();
}

void QuickTunnelClient::Stop() {
  impl_->stop.Fire();
  impl_->stop_or_loss_wake();
}

}  // namespace tunnelkit::cloudflare
