#include "impair_proxy.hpp"

#include <algorithm>
#include <atomic>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>

#include <boost/asio.hpp>

namespace tunnelkit::test {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr std::size_t kReadSize = 64 * 1024;
// Bytes a TCP direction holds before it stops reading (back-pressure to the sender).
constexpr std::size_t kMaxQueuedBytes = 1024 * 1024;
constexpr auto kPollInterval = 10ms;

asio::awaitable<void> Sleep(Clock::duration duration) {
  asio::steady_timer timer(co_await asio::this_coro::executor, duration);
  boost::system::error_code ec;
  co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
}

}  // namespace

class ImpairProxy::Impl {
 public:
  Impl(Protocol protocol, int upstream_port)
      : protocol_(protocol),
        upstream_(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(upstream_port)),
        acceptor_(io_),
        front_(io_) {
    const auto loopback = asio::ip::make_address("127.0.0.1");
    if (protocol_ == Protocol::kTcp) {
      acceptor_.open(tcp::v4());
      acceptor_.set_option(tcp::acceptor::reuse_address(true));
      acceptor_.bind(tcp::endpoint(loopback, 0));
      acceptor_.listen(asio::socket_base::max_listen_connections);
      port_ = acceptor_.local_endpoint().port();
      asio::co_spawn(io_, Accept(), asio::detached);
    } else {
      front_.open(udp::v4());
      front_.bind(udp::endpoint(loopback, 0));
      front_.non_blocking(true);
      front_.set_option(asio::socket_base::receive_buffer_size(4 << 20));
      port_ = front_.local_endpoint().port();
      asio::co_spawn(io_, ReceiveFromClients(), asio::detached);
    }
    thread_ = std::thread([this] { io_.run(); });
  }

  ~Impl() {
    io_.stop();
    thread_.join();
  }

  int port() const { return port_; }

  void Set(const Impairment& impairment) {
    std::lock_guard<std::mutex> lock(mutex_);
    impairment_ = impairment;
  }
  void SetBlackhole(Direction direction, bool on) {
    if (direction != Direction::kToClient) to_server_blackholed_ = on;
    if (direction != Direction::kToServer) to_client_blackholed_ = on;
  }

  void CutConnections() {
    asio::post(io_, [this] {
      for (auto& weak : connections_) {
        if (auto connection = weak.lock()) connection->Reset();
      }
      connections_.clear();
    });
  }

  ImpairStats stats() const {
    ImpairStats s;
    s.connections = connections_seen_;
    s.forwarded = forwarded_;
    s.dropped = dropped_;
    s.duplicated = duplicated_;
    s.writes = writes_;
    return s;
  }

 private:
  // ---- TCP ----
  struct Lane {  // one direction of a TCP connection
    Lane(asio::any_io_executor executor, const std::atomic<bool>& blackholed_flag)
        : wake(executor), blackholed(blackholed_flag) {}
    struct Chunk {
      std::string bytes;
      std::size_t offset = 0;
      Clock::time_point due;
    };
    std::deque<Chunk> queue;
    std::size_t queued_bytes = 0;
    Clock::time_point last_due{};
    bool eof = false;
    asio::steady_timer wake;  // the writer waits on it; the reader cancels it after a push
    const std::atomic<bool>& blackholed;  // this direction forwards nothing while set
  };

  struct Connection {
    Connection(tcp::socket client_socket, tcp::socket server_socket,
               const std::atomic<bool>& to_server_blackholed,
               const std::atomic<bool>& to_client_blackholed)
        : client(std::move(client_socket)),
          server(std::move(server_socket)),
          up(client.get_executor(), to_server_blackholed),
          down(client.get_executor(), to_client_blackholed) {}
    void Close() {
      if (closed) return;
      closed = true;
      boost::system::error_code ec;
      client.close(ec);
      server.close(ec);
      up.wake.cancel();
      down.wake.cancel();
    }
    void Reset() {
      boost::system::error_code ec;
      client.set_option(asio::socket_base::linger(true, 0), ec);
      server.set_option(asio::socket_base::linger(true, 0), ec);
      Close();
    }
    tcp::socket client;
    tcp::socket server;
    Lane up;    // client -> server
    Lane down;  // server -> client
    bool closed = false;
    int finished_writers = 0;
  };

  Impairment Snapshot() {
    std::lock_guard<std::mutex> lock(mutex_);
    return impairment_;
  }

  Clock::duration RandomDelay(const Impairment& impairment) {
    Clock::duration delay = impairment.delay;
    if (impairment.jitter.count() > 0) {
      std::uniform_int_distribution<long long> extra(0, impairment.jitter.count() * 1000);
      delay += std::chrono::microseconds(extra(rng_));
    }
    return delay;
  }

  bool Chance(double probability) {
    if (probability <= 0) return false;
    if (probability >= 1) return true;
    return std::uniform_real_distribution<double>(0, 1)(rng_) < probability;
  }

  asio::awaitable<void> Accept() {
    for (;;) {
      boost::system::error_code ec;
      tcp::socket client =
          co_await acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        if (ec == asio::error::operation_aborted) co_return;
        co_await Sleep(kPollInterval);  // e.g. EMFILE in the test process: try again shortly
        continue;
      }
      ++connections_seen_;
      asio::co_spawn(io_, Serve(std::move(client)), asio::detached);
    }
  }

  asio::awaitable<void> Serve(tcp::socket client) {
    // A blackholed path does not reach the server: hold the connection until it heals.
    while ((to_server_blackholed_ || to_client_blackholed_) && client.is_open())
      co_await Sleep(kPollInterval);
    tcp::socket server(io_);
    boost::system::error_code ec;
    co_await server.async_connect(upstream_, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      client.set_option(asio::socket_base::linger(true, 0), ec);
      co_return;  // the client sees a reset, as the server's refusal would look
    }
    auto connection = std::make_shared<Connection>(std::move(client), std::move(server),
                                                   to_server_blackholed_, to_client_blackholed_);
    connection->client.set_option(tcp::no_delay(true), ec);
    connection->server.set_option(tcp::no_delay(true), ec);
    std::erase_if(connections_, [](const auto& weak) { return weak.expired(); });
    connections_.push_back(connection);
    asio::co_spawn(io_, Read(connection, connection->client, connection->up), asio::detached);
    asio::co_spawn(io_, Write(connection, connection->server, connection->up), asio::detached);
    asio::co_spawn(io_, Read(connection, connection->server, connection->down), asio::detached);
    asio::co_spawn(io_, Write(connection, connection->client, connection->down), asio::detached);
  }

  asio::awaitable<void> Read(std::shared_ptr<Connection> connection, tcp::socket& from,
                             Lane& direction) {
    std::string buffer(kReadSize, '\0');
    while (!connection->closed) {
      if (direction.blackholed || direction.queued_bytes >= kMaxQueuedBytes) {
        co_await Sleep(kPollInterval);
        continue;
      }
      boost::system::error_code ec;
      const std::size_t n = co_await from.async_read_some(
          asio::buffer(buffer), asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        if (ec == asio::error::eof) {
          direction.eof = true;
          direction.wake.cancel();
        } else {
          connection->Close();
        }
        co_return;
      }
      const Impairment impairment = Snapshot();
      // Ordered delivery: a chunk is never due before the one read ahead of it.
      const auto due = std::max(direction.last_due, Clock::now() + RandomDelay(impairment));
      direction.last_due = due;
      direction.queue.push_back({buffer.substr(0, n), 0, due});
      direction.queued_bytes += n;
      direction.wake.cancel();
    }
  }

  asio::awaitable<void> Write(std::shared_ptr<Connection> connection, tcp::socket& to,
                              Lane& direction) {
    while (!connection->closed) {
      boost::system::error_code ec;
      if (direction.queue.empty()) {
        if (direction.eof) {
          to.shutdown(tcp::socket::shutdown_send, ec);
          if (++connection->finished_writers == 2) connection->Close();
          co_return;
        }
        direction.wake.expires_at(Clock::time_point::max());
        co_await direction.wake.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        continue;
      }
      auto& chunk = direction.queue.front();
      if (Clock::now() < chunk.due) {
        direction.wake.expires_at(chunk.due);
        co_await direction.wake.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        continue;
      }
      if (direction.blackholed) {
        co_await Sleep(kPollInterval);
        continue;
      }
      const Impairment impairment = Snapshot();
      std::size_t piece = chunk.bytes.size() - chunk.offset;
      if (impairment.max_write > 0) piece = std::min(piece, impairment.max_write);
      co_await asio::async_write(to, asio::buffer(chunk.bytes.data() + chunk.offset, piece),
                                 asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        connection->Close();
        co_return;
      }
      forwarded_ += piece;
      ++writes_;
      chunk.offset += piece;
      direction.queued_bytes -= piece;
      if (chunk.offset == chunk.bytes.size()) direction.queue.pop_front();
      if (impairment.bytes_per_second > 0) {
        co_await Sleep(std::chrono::microseconds(piece * 1000000 / impairment.bytes_per_second));
      }
    }
  }

  // ---- UDP ----
  struct UdpPeer {
    explicit UdpPeer(asio::io_context& io) : upstream(io) {}
    udp::socket upstream;  // connected to the server, one per client address
    udp::endpoint client;
  };

  asio::awaitable<void> ReceiveFromClients() {
    std::string buffer(65536, '\0');
    for (;;) {
      boost::system::error_code ec;
      co_await front_.async_wait(udp::socket::wait_read,
                                 asio::redirect_error(asio::use_awaitable, ec));
      if (ec == asio::error::operation_aborted) co_return;
      // Take every datagram queued so far before waiting again.
      for (int i = 0; i < 256; ++i) {
        udp::endpoint from;
        const std::size_t n = front_.receive_from(asio::buffer(buffer), from, 0, ec);
        if (ec == asio::error::would_block) break;
        if (ec) continue;  // an ICMP error reported on the socket
        auto& peer = peers_[from];
        if (!peer) {
          peer = std::make_shared<UdpPeer>(io_);
          peer->client = from;
          peer->upstream.open(udp::v4());
          peer->upstream.set_option(asio::socket_base::receive_buffer_size(4 << 20), ec);
          peer->upstream.connect(udp::endpoint(upstream_.address(), upstream_.port()), ec);
          peer->upstream.non_blocking(true);
          ++connections_seen_;
          asio::co_spawn(io_, ReceiveFromServer(peer), asio::detached);
        }
        Deliver(buffer.substr(0, n), to_server_blackholed_, [peer](const std::string& datagram) {
          boost::system::error_code ignored;
          peer->upstream.send(asio::buffer(datagram), 0, ignored);
        });
      }
    }
  }

  asio::awaitable<void> ReceiveFromServer(std::shared_ptr<UdpPeer> peer) {
    std::string buffer(65536, '\0');
    for (;;) {
      boost::system::error_code ec;
      co_await peer->upstream.async_wait(udp::socket::wait_read,
                                         asio::redirect_error(asio::use_awaitable, ec));
      if (ec == asio::error::operation_aborted) co_return;
      for (int i = 0; i < 256; ++i) {
        const std::size_t n = peer->upstream.receive(asio::buffer(buffer), 0, ec);
        if (ec == asio::error::would_block) break;
        if (ec) continue;  // connection_refused while the server is down: keep listening
        Deliver(buffer.substr(0, n), to_client_blackholed_,
                [this, peer](const std::string& datagram) {
                  boost::system::error_code ignored;
                  front_.send_to(asio::buffer(datagram), peer->client, 0, ignored);
                });
      }
    }
  }

  template <typename Send>
  void Deliver(std::string datagram, const std::atomic<bool>& blackholed, Send send) {
    const Impairment impairment = Snapshot();
    if (blackholed || Chance(impairment.loss)) {
      ++dropped_;
      return;
    }
    const int copies = Chance(impairment.duplicate) ? 2 : 1;
    if (copies == 2) ++duplicated_;
    auto shared = std::make_shared<const std::string>(std::move(datagram));
    for (int i = 0; i < copies; ++i) {
      const auto delay = RandomDelay(impairment);
      if (delay == Clock::duration::zero()) {
        send(*shared);
        ++forwarded_;
        continue;
      }
      auto timer = std::make_shared<asio::steady_timer>(io_, delay);
      timer->async_wait([this, timer, shared, send](const boost::system::error_code& ec) {
        if (ec) return;
        send(*shared);
        ++forwarded_;
      });
    }
  }

  Protocol protocol_;
  asio::io_context io_;
  tcp::endpoint upstream_;
  tcp::acceptor acceptor_;
  udp::socket front_;
  std::map<udp::endpoint, std::shared_ptr<UdpPeer>> peers_;
  std::vector<std::weak_ptr<Connection>> connections_;
  int port_ = 0;
  std::mutex mutex_;
  Impairment impairment_;
  std::atomic<bool> to_server_blackholed_{false};
  std::atomic<bool> to_client_blackholed_{false};
  std::mt19937_64 rng_{20261207};
  std::atomic<std::uint64_t> connections_seen_{0};
  std::atomic<std::uint64_t> forwarded_{0};
  std::atomic<std::uint64_t> dropped_{0};
  std::atomic<std::uint64_t> duplicated_{0};
  std::atomic<std::uint64_t> writes_{0};
  std::thread thread_;
};

ImpairProxy::ImpairProxy(Protocol protocol, int upstream_port)
    : impl_(std::make_unique<Impl>(protocol, upstream_port)) {}
ImpairProxy::~ImpairProxy() = default;
int ImpairProxy::port() const {
  return impl_->port();
}
void ImpairProxy::Set(const Impairment& impairment) {
  impl_->Set(impairment);
}
void ImpairProxy::Blackhole(Direction direction) {
  impl_->SetBlackhole(direction, true);
}
void ImpairProxy::Heal() {
  impl_->SetBlackhole(Direction::kBoth, false);
}
void ImpairProxy::CutConnections() {
  impl_->CutConnections();
}
ImpairStats ImpairProxy::stats() const {
  return impl_->stats();
}

}  // namespace tunnelkit::test
