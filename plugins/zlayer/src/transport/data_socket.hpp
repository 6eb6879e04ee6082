// One data-plane WebSocket (tunnelkit data plane v2), served in asio with Boost.Beast: no
// libwebsockets, no second thread. Plain ws runs Beast straight on the TCP socket; wss runs it
// over the core's TlsStream (through TlsLayer, tls_layer.hpp).
//
// A data upgrade carries `Sec-WebSocket-Protocol: tunnelkit-data.v2`, which upstream agents
// never send: the server's front door (front_door.hpp) routes on it. After the upgrade the
// agent's first message is DataAttach; every later binary message is one data frame
// (codec/extension.hpp).
//
// Reads go straight into the caller's buffer (Beast unmasks in place) and a message is written
// whole, so a 64 KiB chunk costs one or two syscalls. An idle socket holds no payload buffer;
// the agent side's masking buffer is sized to the last message written.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/system/error_code.hpp>

#include "codec/extension.hpp"
#include "transport/ws_url.hpp"

namespace tunnelkit {
class TlsStream;
}

namespace tunnelkit::zlayer::transport {

// The subprotocol that marks a data-plane upgrade: one public connection per WebSocket.
inline constexpr char kDataSubprotocol[] = "tunnelkit-data.v2";
// A shared data WebSocket: many public connections over the core multiplexer
// (codec/mux_codec.hpp), offered only when both ends negotiated kFeatureSharedDataChannels.
inline constexpr char kDataMuxSubprotocol[] = "tunnelkit-data-mux.v1";

enum class DataKind : std::uint8_t { kPerConnection, kShared };

inline const char* SubprotocolOf(DataKind kind) {
  return kind == DataKind::kShared ? kDataMuxSubprotocol : kDataSubprotocol;
}

// Largest message either side accepts: one data frame with the largest payload (DataAttach and
// datagrams are smaller).
inline constexpr std::size_t kMaxDataMessage =
    codec::kDataFrameHeaderSize + codec::kMaxDataFramePayload;

struct DataReadResult {
  boost::system::error_code ec;
  std::size_t bytes = 0;
  bool message_done = false;  // these bytes end the current message
};

class DataSocket {
 public:
  virtual ~DataSocket() = default;

  virtual boost::asio::any_io_executor get_executor() = 0;
  // Reads bytes of the current message into `buffer` (at most one message at a time).
  virtual boost::asio::awaitable<DataReadResult> ReadSome(boost::asio::mutable_buffer buffer) = 0;
  // Writes `head` + `body` as one binary message. One write at a time.
  virtual boost::asio::awaitable<boost::system::error_code> WriteMessage(
      boost::asio::const_buffer head, boost::asio::const_buffer body = {}) = 0;
  // Graceful end after both sides finished: TLS close_notify, TCP FIN after what was written.
  virtual boost::asio::awaitable<void> Finish() = 0;
  // Abortive close; outstanding operations end with an error. Safe to call more than once.
  virtual void Close() = 0;
  // Plain ws: the TCP socket under the WebSocket, for splice(2) (data_splice.hpp); null on wss.
  virtual boost::asio::ip::tcp::socket* plain_socket() { return nullptr; }

  const std::string& peer() const { return peer_; }
  DataKind kind() const { return kind_; }
  void set_kind(DataKind kind) { kind_ = kind; }
  // Payload bytes moved both ways (for the heap trim heuristics).
  std::uint64_t bytes_moved = 0;

 protected:
  std::string peer_;
  DataKind kind_ = DataKind::kPerConnection;
};

// Reads one whole message of at most `max` bytes; nullopt with `ec` set on error (a longer
// message is an error too).
boost::asio::awaitable<std::optional<std::vector<std::uint8_t>>> ReadDataMessage(
    DataSocket& socket, std::size_t max, boost::system::error_code& ec);

using UpgradeRequest = boost::beast::http::request<boost::beast::http::empty_body>;

// Server side: completes the upgrade of an already-read request. `tls` null: plain ws on
// `socket`; otherwise `tls` (already handshaken) carries it. `kind`: which data subprotocol the
// request asked for (answered with the same). Null with `error` on failure.
boost::asio::awaitable<std::shared_ptr<DataSocket>> AcceptDataSocket(
    boost::asio::ip::tcp::socket socket, std::unique_ptr<TlsStream> tls,
    const UpgradeRequest& request, std::string peer, std::chrono::milliseconds timeout,
    DataKind kind, std::string& error);

// Agent side: connects to `url` (TLS when wss, verified by `tls_context`), upgrades with the
// data subprotocol of `kind`, naming its link with `link_credential` when not empty (header
// Tunnelkit-Link, data_link.hpp). Null with `error` on failure.
boost::asio::awaitable<std::shared_ptr<DataSocket>> DialDataSocket(
    boost::asio::any_io_executor executor, const WsUrl& url, boost::asio::ssl::context* tls_context,
    std::chrono::milliseconds timeout, DataKind kind, std::string& error,
    std::string link_credential = {});

}  // namespace tunnelkit::zlayer::transport
