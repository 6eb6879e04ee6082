#include "access/access_forwarder.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "tunnelkit/stream/socket_stream.hpp"
#include "tunnelkit/stream/splice.hpp"

namespace tunnelkit::zlayer {

namespace asio = boost::asio;
using asio::ip::tcp;

AccessForwarder::AccessForwarder(asio::io_context& io, AccessOptions options,
                                 std::shared_ptr<spdlog::logger> logger)
    : io_(io),
      options_(std::move(options)),
      log_(std::move(logger)),
      listener_(io.get_executor()),
      ttl_timer_(io) {}

AccessForwarder::~AccessForwarder() = default;

bool AccessForwarder::Start(std::string& error) {
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(options_.local_host, ec);
  if (ec) {
    error = "local address '" + options_.local_host + "' is not an IP address";
    return false;
  }
  const tcp::endpoint endpoint(address, static_cast<unsigned short>(options_.local_port));
  if (!listener_.Open(endpoint, error)) return false;
  local_port_ = listener_.port();
  if (options_.ttl.count() > 0) {
    ttl_timer_.expires_after(options_.ttl);
    ttl_timer_.async_wait([this](boost::system::error_code tec) {
      if (!tec) Stop("TTL expired");
    });
  }
  log_->info("access: forwarding {}:{} -> {}:{}{}", options_.local_host, local_port_,
             options_.endpoint_host, options_.endpoint_port,
             options_.ttl.count() > 0 ? " for " + std::to_string(options_.ttl.count() / 1000) + " s"
                                      : std::string(" (no TTL)"));
  net::ListenerOptions listener_options;
  listener_options.name = "access listener";
  listener_options.logger = log_;
  // The listener closes in Stop and with this object: the handler never outlives it.
  listener_.Start(
      [this](tcp::socket socket) {
        if (!stopped_) asio::co_spawn(io_, Forward(std::move(socket)), asio::detached);
      },
      listener_options);
  return true;
}

void AccessForwarder::Stop(const std::string& reason) {
  if (stopped_) return;
  stopped_ = true;
  listener_.Close();
  ttl_timer_.cancel();
  log_->info("access: ending ({}); closing {} open connection(s)", reason, open_.size());
  auto open = open_;
  for (const auto& stream : open) stream->Reset();
  if (open_.empty() && on_done_) on_done_();
}

asio::awaitable<void> AccessForwarder::Forward(tcp::socket socket) {
  auto local = std::make_shared<TcpStream>(std::move(socket));
  open_.insert(local);
  boost::system::error_code ec;
  // Named arguments: g++ 12 mishandles non-trivial temporaries in a co_await expression.
  const asio::any_io_executor executor = io_.get_executor();
  auto remote = co_await ConnectTcpStream(executor, options_.endpoint_host, options_.endpoint_port,
                                          options_.connect_timeout, ec);
  if (!remote || stopped_) {
    if (!stopped_) {
      log_->warn("access: cannot reach {}:{}: {}", options_.endpoint_host, options_.endpoint_port,
                 ec.message());
    }
    local->Reset();
  } else {
    std::shared_ptr<TcpStream> remote_shared(std::move(remote));
    open_.insert(remote_shared);
    co_await Splice(*local, *remote_shared);
    open_.erase(remote_shared);
  }
  open_.erase(local);
  if (stopped_ && open_.empty() && on_done_) on_done_();
}

}  // namespace tunnelkit::zlayer
