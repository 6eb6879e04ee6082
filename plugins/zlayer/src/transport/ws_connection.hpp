// One WebSocket connection as the asio side sees it. libwebsockets runs in WsLoop's own
// thread; this object lives on the io_context and only talks to that thread through
// WsLoop's doorbell (outgoing) and asio::post (incoming). Binary messages only.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

struct lws;

namespace tunnelkit::zlayer::transport {

class WsLoop;
class WsConnection;

// Largest message accepted from the peer (control messages are <= 64 KiB, data frames a byte
// more), and how much received data waits for the asio side before reading stops.
inline constexpr std::size_t kWsMaxMessage = 256 << 10;
inline constexpr std::size_t kWsHighWater = 1 << 20;
// The same two before a server-side peer has authenticated: an Auth message is well under
// this, and nothing else is read before it is answered.
inline constexpr std::size_t kWsUnauthenticatedMaxMessage = 8 << 10;

// State shared by the lws thread and the asio side; the mutex guards the marked fields.
struct WsShared {
  std::mutex mu;
  std::deque<std::vector<std::uint8_t>> outbox;  // guarded; each has LWS_PRE bytes of headroom
  bool close_requested = false;                  // guarded
  std::atomic<std::size_t> outbox_bytes{0};
  std::atomic<std::size_t> inbox_bytes{0};  // delivered to asio, not yet consumed
  std::atomic<bool> sender_waiting{false};
  // Set while the connection sits in the loop's doorbell list: one ring (and one wake-up of
  // the lws thread) covers any number of messages queued meanwhile.
  std::atomic<bool> rung{false};

  // lws thread only.
  struct lws* wsi = nullptr;
  std::vector<std::uint8_t> partial;  // fragments of the message being received
  bool rx_paused = false;
  bool finished = false;  // CLOSED or connection error seen
  // Read by the lws thread, raised by WsConnection::Authenticated on the io_context.
  std::atomic<std::size_t> max_message{kWsMaxMessage};
  std::atomic<std::size_t> high_water{kWsHighWater};
  // Raised by WsConnection::Authenticated: the lws thread then lifts the pre-auth deadline.
  std::atomic<bool> authenticated{false};
  bool deadline_armed = false;  // lws thread only: lws_set_timeout holds the pre-auth deadline

  std::weak_ptr<WsConnection> owner;  // dereferenced only on the io_context
};

class WsConnection : public std::enable_shared_from_this<WsConnection> {
 public:
  // Flow-control watermarks: the lws thread stops reading when this many received bytes wait
  // for the asio side, and Send suspends when this many bytes wait to be written.
  static constexpr std::size_t kHighWater = kWsHighWater;
  static constexpr std::size_t kLowWater = 256 << 10;
  static constexpr std::size_t kMaxMessage = kWsMaxMessage;

  WsConnection(boost::asio::io_context& io, WsLoop& loop, std::shared_ptr<WsShared> shared);
  ~WsConnection();
  // Connections alive in this process, control and data (leak and churn tests).
  static std::size_t live();
  WsConnection(const WsConnection&) = delete;
  WsConnection& operator=(const WsConnection&) = delete;

  // Next whole binary message; nullopt once the connection is closed (see close_reason()).
  boost::asio::awaitable<std::optional<std::vector<std::uint8_t>>> Receive();
  // Queues `head` + `body` as one binary message; suspends while the send queue is above the
  // high-water mark. false once closed.
  boost::asio::awaitable<bool> Send(std::span<const std::uint8_t> head,
                                    std::span<const std::uint8_t> body = {});
  // Queues one message without waiting for the send queue to drain (small control messages).
  // false once closed.
  bool Queue(std::span<const std::uint8_t> head, std::span<const std::uint8_t> body = {});
  // Lifts the small pre-authentication limits a server-side connection starts with.
  void Authenticated();
  // Sends what is queued, then a Close frame. Safe to call more than once.
  void Close();
  bool closed() const { return closed_; }
  const std::string& close_reason() const { return close_reason_; }

  const std::string& peer() const { return peer_; }
  const std::string& path() const { return path_; }

  // Called on the io_context by WsLoop (posted from the lws thread).
  void OnOpen(std::string peer, std::string path);
  void OnMessage(std::vector<std::uint8_t> message);
  void OnClosed(std::string reason);
  void OnDrained();
  bool opened() const { return opened_; }
  // Wakes a Connect waiting for OnOpen/OnClosed.
  boost::asio::steady_timer& state_timer() { return state_timer_; }

 private:
  void Ring();

  boost::asio::io_context& io_;
  WsLoop& loop_;
  std::shared_ptr<const bool> loop_alive_;
  std::shared_ptr<WsShared> shared_;
  std::deque<std::vector<std::uint8_t>> inbox_;
  boost::asio::steady_timer recv_wake_;
  boost::asio::steady_timer send_wake_;
  boost::asio::steady_timer state_timer_;
  bool opened_ = false;
  bool closed_ = false;
  bool close_sent_ = false;
  std::uint64_t bytes_moved_ = 0;  // both ways; a bulk connection's close triggers a heap trim
  std::string close_reason_;
  std::string peer_;
  std::string path_;
};

}  // namespace tunnelkit::zlayer::transport
