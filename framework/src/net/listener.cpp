#include "tunnelkit/net/listener.hpp"

#include <cerrno>

#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "tunnelkit/net/url.hpp"
#include "tunnelkit/rate_limited_log.hpp"

namespace tunnelkit::net {

namespace asio = boost::asio;
using asio::ip::tcp;

bool IsTransientAcceptError(const boost::system::error_code& ec) {
  if (ec.category() != boost::system::system_category()) return false;
  switch (ec.value()) {
    case EMFILE:
    case ENFILE:
    case ENOBUFS:
    case ENOMEM:
    case ECONNABORTED:
    case EPERM:
    case EPROTO:
    case EINTR:
    case EAGAIN:
    case ETIMEDOUT:
    // accept(2): "already-pending network errors on the new socket" are passed on.
    case ENETDOWN:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH:
    case ECONNRESET:
      return true;
    default:
      return false;
  }
}

struct Listener::State : std::enable_shared_from_this<State> {
  explicit State(asio::any_io_executor executor) : acceptor(executor), pause(executor) {}

  asio::awaitable<void> Run() {
    auto self = shared_from_this();
    std::shared_ptr<spdlog::logger> logger =
        options.logger ? options.logger : spdlog::default_logger();
    RateLimitedLog warnings(options.log_interval);
    std::chrono::milliseconds next_pause = options.min_pause;
    while (!closed) {
      boost::system::error_code ec;
      tcp::socket socket =
          co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (closed) break;
      if (!ec) {
        ++stats.accepted;
        next_pause = options.min_pause;
        handler(std::move(socket));
        continue;
      }
      if (ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor) break;
      // Anything else is also retried (after the pause): giving up leaves a port that is bound
      // but never answers, which is worse than retrying a listener that is really broken.
      ++stats.transient_errors;
      warnings.Log(*logger, spdlog::level::warn, "{}: accept failed: {}{}; retrying in {} ms",
                   options.name, ec.message(), IsTransientAcceptError(ec) ? "" : " (unexpected)",
                   next_pause.count());
      stats.log_lines = warnings.lines();
      pause.expires_after(next_pause);
      boost::system::error_code wait_ec;
      co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, wait_ec));
      next_pause = std::min(next_pause * 2, options.max_pause);
    }
    handler = nullptr;  // what it captured goes now, not when the Listener does
  }

  tcp::acceptor acceptor;
  asio::steady_timer pause;
  Handler handler;
  ListenerOptions options;
  ListenerStats stats;
  bool closed = false;
};

Listener::Listener(asio::any_io_executor executor)
    : state_(std::make_shared<State>(std::move(executor))) {}

Listener::~Listener() {
  Close();
}

boost::system::error_code Listener::Open(const tcp::endpoint& endpoint) {
  auto& acceptor = state_->acceptor;
  boost::system::error_code ec;
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    boost::system::error_code ignored;
    acceptor.close(ignored);
    return ec;
  }
  state_->closed = false;
  return {};
}

bool Listener::Open(const tcp::endpoint& endpoint, std::string& error) {
  if (const auto ec = Open(endpoint)) {
    error = "cannot listen on " + EndpointText(endpoint) + ": " + ec.message();
    return false;
  }
  return true;
}

void Listener::Start(Handler on_socket, ListenerOptions options) {
  state_->handler = std::move(on_socket);
  state_->options = std::move(options);
  asio::co_spawn(
      state_->acceptor.get_executor(), [state = state_] { return state->Run(); }, asio::detached);
}

void Listener::Close() {
  state_->closed = true;
  boost::system::error_code ec;
  state_->acceptor.close(ec);
  state_->pause.cancel();
}

bool Listener::is_open() const {
  return !state_->closed && state_->acceptor.is_open();
}

tcp::endpoint Listener::local_endpoint() const {
  boost::system::error_code ec;
  auto endpoint = state_->acceptor.local_endpoint(ec);
  return ec ? tcp::endpoint() : endpoint;
}

const ListenerStats& Listener::stats() const {
  return state_->stats;
}

}  // namespace tunnelkit::net
