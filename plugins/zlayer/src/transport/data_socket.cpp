#include "transport/data_socket.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/websocket.hpp>

#include "transport/data_link.hpp"
#include "transport/tls_layer.hpp"
#include "tunnelkit/stream/deadline.hpp"
#include "tunnelkit/stream/socket_stream.hpp"
#include "tunnelkit/stream/tls_stream.hpp"
#include "util/memory_trim.hpp"

namespace tunnelkit::zlayer::transport {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = boost::beast::websocket;
using asio::ip::tcp;
using boost::system::error_code;

namespace {

// The agent masks what it sends: Beast copies each message through a buffer of this size. It
// is sized to the message (power of two, 256 bytes to 64 KiB): bulk transfers get few, large
// writes, and a connection that last sent a small message keeps a small buffer.
constexpr std::size_t kMinMaskBuffer = 256;
constexpr std::size_t kMaxMaskBuffer = 64 * 1024;

template <class Next>
class BeastDataSocket final : public DataSocket {
 public:
  // Plain: Beast on the socket itself.
  BeastDataSocket(tcp::socket socket, std::string peer) requires std::is_same_v<Next, tcp::socket>
      : ws_(std::move(socket)) {
    peer_ = std::move(peer);
    Configure();
  }
  // TLS: Beast over the TlsStream (kept alive here).
  BeastDataSocket(std::unique_ptr<TlsStream> tls,
                  std::string peer) requires std::is_same_v<Next, TlsLayer> : tls_(std::move(tls)),
                                                                              ws_(TlsLayer(*tls_)) {
    peer_ = std::move(peer);
    Configure();
  }
  ~BeastDataSocket() override {
    util::NoteClosed(get_executor(), bytes_moved);
    Close();
  }

  websocket::stream<Next>& ws() { return ws_; }

  asio::any_io_executor get_executor() override { return ws_.get_executor(); }

  asio::awaitable<DataReadResult> ReadSome(asio::mutable_buffer buffer) override {
    error_code ec;
    const std::size_t n =
        co_await ws_.async_read_some(buffer, asio::redirect_error(asio::use_awaitable, ec));
    bytes_moved += n;
    co_return DataReadResult{ec, n, !ec && ws_.is_message_done()};
  }

  asio::awaitable<error_code> WriteMessage(asio::const_buffer head,
                                           asio::const_buffer body) override {
    const std::size_t total = head.size() + body.size();
    if (client_) {
      const std::size_t want =
          std::min(kMaxMaskBuffer, std::bit_ceil(std::max(total, kMinMaskBuffer)));
      ws_.write_buffer_bytes(want);
    }
    const std::array<asio::const_buffer, 2> buffers{head, body};
    error_code ec;
    co_await ws_.async_write(buffers, asio::redirect_error(asio::use_awaitable, ec));
    bytes_moved += total;
    co_return ec;
  }

  asio::awaitable<void> Finish() override {
    if (closed_) co_return;
    if (tls_) {
      // close_notify, then the socket closes (gracefully: what was written still leaves).
      co_await tls_->ShutdownWrite();
      closed_ = true;
      error_code ec;
      tls_->socket().close(ec);
      co_return;
    }
    if constexpr (std::is_same_v<Next, tcp::socket>) {
      closed_ = true;
      error_code ec;
      ws_.next_layer().shutdown(tcp::socket::shutdown_send, ec);
      ws_.next_layer().close(ec);
    }
  }

  void Close() override {
    if (closed_) return;
    closed_ = true;
    if (tls_) {
      tls_->Reset();
    } else if constexpr (std::is_same_v<Next, tcp::socket>) {
      error_code ec;
      ws_.next_layer().close(ec);
    }
  }

  void set_client() { client_ = true; }

  tcp::socket* plain_socket() override {
    if constexpr (std::is_same_v<Next, tcp::socket>) {
      return closed_ ? nullptr : &ws_.next_layer();
    } else {
      return nullptr;
    }
  }

 private:
  void Configure() {
    ws_.binary(true);
    ws_.auto_fragment(false);
    ws_.read_message_max(kMaxDataMessage);
    websocket::permessage_deflate pmd;
    pmd.client_enable = false;
    pmd.server_enable = false;
    ws_.set_option(pmd);
  }

  std::unique_ptr<TlsStream> tls_;  // before ws_: ws_ refers to it
  websocket::stream<Next> ws_;
  bool client_ = false;
  bool closed_ = false;
};

using PlainDataSocket = BeastDataSocket<tcp::socket>;
using TlsDataSocket = BeastDataSocket<TlsLayer>;

template <class Socket>
asio::awaitable<std::string> AcceptOn(Socket& socket, const UpgradeRequest& request,
                                      std::chrono::milliseconds timeout) {
  auto& ws = socket.ws();
  const char* subprotocol = SubprotocolOf(socket.kind());
  ws.set_option(
      websocket::stream_base::decorator([subprotocol](websocket::response_type& response) {
        response.set(beast::http::field::sec_websocket_protocol, subprotocol);
      }));
  Deadline deadline(socket.get_executor());
  deadline.Arm(timeout, [&socket] { socket.Close(); });
  error_code ec;
  co_await ws.async_accept(request, asio::redirect_error(asio::use_awaitable, ec));
  if (deadline.fired()) co_return "timed out completing the upgrade";
  if (ec) co_return "upgrade failed: " + ec.message();
  co_return std::string();
}

template <class Socket>
asio::awaitable<std::string> HandshakeOn(Socket& socket, const WsUrl& url,
                                         std::chrono::milliseconds timeout,
                                         const std::string& link_credential) {
  auto& ws = socket.ws();
  const char* subprotocol = SubprotocolOf(socket.kind());
  ws.set_option(websocket::stream_base::decorator(
      [subprotocol, link_credential](websocket::request_type& request) {
        request.set(beast::http::field::sec_websocket_protocol, subprotocol);
        if (!link_credential.empty()) request.set(kDataLinkHeader, link_credential);
      }));
  socket.set_client();
  Deadline deadline(socket.get_executor());
  deadline.Arm(timeout, [&socket] { socket.Close(); });
  const bool v6 = url.host.find(':') != std::string::npos;
  const std::string host = (v6 ? "[" + url.host + "]" : url.host) + ":" + std::to_string(url.port);
  const std::string path = url.path.empty() ? std::string("/") : url.path;
  websocket::response_type response;
  error_code ec;
  co_await ws.async_handshake(response, host, path, asio::redirect_error(asio::use_awaitable, ec));
  if (deadline.fired()) co_return "timed out upgrading to a data WebSocket";
  if (ec) {
    if (ec == websocket::error::upgrade_declined) {
      co_return "the server declined the data WebSocket (HTTP " +
          std::to_string(response.result_int()) + "): not a tunnelkit v2 server?";
    }
    co_return "data WebSocket upgrade failed: " + ec.message();
  }
  if (response[beast::http::field::sec_websocket_protocol] != subprotocol) {
    co_return "the server did not accept the data subprotocol " + std::string(subprotocol);
  }
  co_return std::string();
}

asio::any_io_executor executor_of(DataSocket& socket) {
  return socket.get_executor();
}

}  // namespace

asio::awaitable<std::optional<std::vector<std::uint8_t>>> ReadDataMessage(DataSocket& socket,
                                                                          std::size_t max,
                                                                          error_code& ec) {
  std::vector<std::uint8_t> message;
  std::array<std::uint8_t, 2048> chunk;
  for (;;) {
    const auto r = co_await socket.ReadSome(asio::buffer(chunk));
    if (r.ec) {
      ec = r.ec;
      co_return std::nullopt;
    }
    if (message.size() + r.bytes > max) {
      ec = asio::error::message_size;
      co_return std::nullopt;
    }
    message.insert(message.end(), chunk.begin(), chunk.begin() + static_cast<long>(r.bytes));
    if (r.message_done) co_return message;
  }
}

asio::awaitable<std::shared_ptr<DataSocket>> AcceptDataSocket(
    tcp::socket socket, std::unique_ptr<TlsStream> tls, const UpgradeRequest& request,
    std::string peer, std::chrono::milliseconds timeout, DataKind kind, std::string& error) {
  if (tls) {
    auto data = std::make_shared<TlsDataSocket>(std::move(tls), std::move(peer));
    data->set_kind(kind);
    error = co_await AcceptOn(*data, request, timeout);
    if (!error.empty()) co_return nullptr;
    util::NoteOpened(executor_of(*data));
    co_return data;
  }
  auto data = std::make_shared<PlainDataSocket>(std::move(socket), std::move(peer));
  data->set_kind(kind);
  error = co_await AcceptOn(*data, request, timeout);
  if (!error.empty()) co_return nullptr;
  util::NoteOpened(executor_of(*data));
  co_return data;
}

asio::awaitable<std::shared_ptr<DataSocket>> DialDataSocket(asio::any_io_executor executor,
                                                            const WsUrl& url,
                                                            asio::ssl::context* tls_context,
                                                            std::chrono::milliseconds timeout,
                                                            DataKind kind, std::string& error,
                                                            std::string link_credential) {
  tcp::socket socket(executor);
  const std::string port = std::to_string(url.port);
  error_code ec = co_await ConnectTcp(socket, url.host, port, timeout);
  if (ec) {
    error = "cannot connect to " + url.ToString() + ": " + ec.message();
    co_return nullptr;
  }
  error_code peer_ec;
  const auto remote = socket.remote_endpoint(peer_ec);
  std::string peer = peer_ec ? url.host : remote.address().to_string() + ":" + port;
  if (url.tls) {
    if (tls_context == nullptr) {
      error = "no TLS context for " + url.ToString();
      co_return nullptr;
    }
    auto tls = std::make_unique<TlsStream>(std::move(socket), *tls_context,
                                           TlsStream::Role::kClient, url.host);
    {
      Deadline deadline(executor);
      TlsStream* raw = tls.get();
      deadline.Arm(timeout, [raw] { raw->Reset(); });
      ec = co_await tls->Handshake();
      if (deadline.fired()) {
        error = "TLS handshake with " + url.ToString() + " timed out";
        co_return nullptr;
      }
    }
    if (ec) {
      error = "TLS handshake with " + url.ToString() +
              " failed: " + (tls->LastError().empty() ? ec.message() : tls->LastError());
      co_return nullptr;
    }
    auto data = std::make_shared<TlsDataSocket>(std::move(tls), std::move(peer));
    data->set_kind(kind);
    error = co_await HandshakeOn(*data, url, timeout, link_credential);
    if (!error.empty()) co_return nullptr;
    util::NoteOpened(executor);
    co_return data;
  }
  auto data = std::make_shared<PlainDataSocket>(std::move(socket), std::move(peer));
  data->set_kind(kind);
  error = co_await HandshakeOn(*data, url, timeout, link_credential);
  if (!error.empty()) co_return nullptr;
  util::NoteOpened(executor);
  co_return data;
}

}  // namespace tunnelkit::zlayer::transport
