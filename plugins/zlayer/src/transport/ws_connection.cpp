#include "transport/ws_connection.hpp"

#include <libwebsockets.h>

#include <atomic>

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "transport/ws_loop.hpp"
#include "util/memory_trim.hpp"

namespace tunnelkit::zlayer::transport {

namespace asio = boost::asio;

namespace {
std::atomic<std::size_t> live_connections{0};  // for leak and churn tests
}  // namespace

std::size_t WsConnection::live() {
  return live_connections.load(std::memory_order_relaxed);
}

WsConnection::WsConnection(asio::io_context& io, WsLoop& loop, std::shared_ptr<WsShared> shared)
    : io_(io),
      loop_(loop),
      loop_alive_(loop.alive_token()),
      shared_(std::move(shared)),
      recv_wake_(io),
      send_wake_(io),
      state_timer_(io) {
  recv_wake_.expires_at(asio::steady_timer::time_point::max());
  send_wake_.expires_at(asio::steady_timer::time_point::max());
  live_connections.fetch_add(1, std::memory_order_relaxed);
}

WsConnection::~WsConnection() {
  live_connections.fetch_sub(1, std::memory_order_relaxed);
  // Nobody reads any more: let the lws side close (outstanding posts find no owner).
  if (!closed_ && !close_sent_) {
    {
      std::lock_guard lock(shared_->mu);
      shared_->close_requested = true;
    }
    Ring();
  }
}

void WsConnection::Ring() {
  // A connection can outlive its loop (a coroutine destroyed with the io_context after the
  // server or agent that owned the loop).
  if (*loop_alive_) loop_.Ring(shared_);
}

asio::awaitable<std::optional<std::vector<std::uint8_t>>> WsConnection::Receive() {
  auto self = shared_from_this();
  while (inbox_.empty() && !closed_) {
    boost::system::error_code ec;
    recv_wake_.expires_at(asio::steady_timer::time_point::max());
    co_await recv_wake_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  if (inbox_.empty()) co_return std::nullopt;
  auto message = std::move(inbox_.front());
  inbox_.pop_front();
  const std::size_t before = shared_->inbox_bytes.fetch_sub(message.size());
  const std::size_t after = before - message.size();
  // Crossing the low-water mark may let a paused lws reader go on.
  if (before >= kLowWater && after < kLowWater) Ring();
  co_return message;
}

void WsConnection::Authenticated() {
  shared_->max_message = kMaxMessage;
  shared_->high_water = kHighWater;
  shared_->authenticated = true;
  Ring();  // a reader paused at the small mark goes on
}

bool WsConnection::Queue(std::span<const std::uint8_t> head, std::span<const std::uint8_t> body) {
  if (closed_ || close_sent_) return false;
  std::vector<std::uint8_t> message(LWS_PRE + head.size() + body.size());
  std::copy(head.begin(), head.end(), message.begin() + LWS_PRE);
  std::copy(body.begin(), body.end(), message.begin() + LWS_PRE + head.size());
  const std::size_t size = head.size() + body.size();
  bytes_moved_ += size;
  {
    std::lock_guard lock(shared_->mu);
    shared_->outbox.push_back(std::move(message));
  }
  shared_->outbox_bytes += size;
  Ring();
  return true;
}

asio::awaitable<bool> WsConnection::Send(std::span<const std::uint8_t> head,
                                         std::span<const std::uint8_t> body) {
  auto self = shared_from_this();
  if (!Queue(head, body)) co_return false;
  while (!closed_ && shared_->outbox_bytes.load() > kHighWater) {
    shared_->sender_waiting = true;
    // Re-check after publishing the flag: the lws thread may have drained meanwhile.
    if (shared_->outbox_bytes.load() <= kHighWater) break;
    boost::system::error_code ec;
    send_wake_.expires_at(asio::steady_timer::time_point::max());
    co_await send_wake_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  shared_->sender_waiting = false;
  co_return !closed_;
}

void WsConnection::Close() {
  if (closed_ || close_sent_) return;
  close_sent_ = true;
  {
    std::lock_guard lock(shared_->mu);
    shared_->close_requested = true;
  }
  Ring();
}

void WsConnection::OnOpen(std::string peer, std::string path) {
  opened_ = true;
  util::NoteOpened(io_.get_executor());
  peer_ = std::move(peer);
  path_ = std::move(path);
  state_timer_.cancel();
}

void WsConnection::OnMessage(std::vector<std::uint8_t> message) {
  bytes_moved_ += message.size();
  inbox_.push_back(std::move(message));
  recv_wake_.cancel();
}

void WsConnection::OnClosed(std::string reason) {
  if (closed_) return;
  closed_ = true;
  close_reason_ = std::move(reason);
  util::NoteClosed(io_.get_executor(), bytes_moved_);
  recv_wake_.cancel();
  send_wake_.cancel();
  state_timer_.cancel();
}

void WsConnection::OnDrained() {
  send_wake_.cancel();
}

}  // namespace tunnelkit::zlayer::transport
