#include "tunnelkit/cloudflare/wire/quic/quic_server.hpp"

#include <algorithm>
#include <string>
#include <unordered_map>

#include <gnutls/crypto.h>
#include <spdlog/spdlog.h>

#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>

#include "quic_internal.hpp"
#include "quic_tls.hpp"

namespace tunnelkit::cloudflare::quic {

namespace {

constexpr std::size_t kMaxConnections = 10000;

std::string CidKey(const std::uint8_t* data, std::size_t len) {
  return std::string(reinterpret_cast<const char*>(data), len);
}

}  // namespace

struct QuicServer::Core : std::enable_shared_from_this<Core> {
  asio::any_io_executor executor;
  std::shared_ptr<detail::UdpLink> link;
  QuicServerOptions options;
  std::shared_ptr<TlsCredentials> credentials;
  ConnectionHandler on_connection;
  udp::endpoint local;
  std::unordered_map<std::string, std::shared_ptr<QuicConnection>> by_cid;
  std::unordered_map<QuicConnection*, std::shared_ptr<QuicConnection>> connections;
  bool closed = false;

  void StartReceive() {
    link->socket.async_wait(
        udp::socket::wait_read, [weak = weak_from_this()](const error_code& ec) {
          auto self = weak.lock();
          if (!self || self->closed || ec == asio::error::operation_aborted) return;
          // Drain what is queued (GRO may hand over many datagrams per read), then flush each
          // touched connection once.
          std::vector<std::shared_ptr<QuicConnection>> touched;
          std::size_t len = 0;
          std::size_t segment = 0;
          for (std::size_t i = 0; i < kMaxDatagramsPerRead && !self->closed; ++i) {
            if (!self->link->ReceiveOnce(len, segment)) break;
            for (std::size_t off = 0; off < len && !self->closed; off += segment) {
              self->OnDatagram(self->link->rx.data() + off, std::min(segment, len - off), touched);
            }
          }
          for (auto& conn : touched) conn->Flush();
          if (!self->closed) self->StartReceive();
        });
  }

  void OnDatagram(const std::uint8_t* data, std::size_t len,
                  std::vector<std::shared_ptr<QuicConnection>>& touched) {
    ngtcp2_version_cid vc;
    int rv = ngtcp2_pkt_decode_version_cid(&vc, data, len, detail::kServerCidLength);
    if (rv == NGTCP2_ERR_VERSION_NEGOTIATION) {
      SendVersionNegotiation(vc);
      return;
    }
    if (rv != 0) return;
    std::shared_ptr<QuicConnection> conn;
    if (auto it = by_cid.find(CidKey(vc.dcid, vc.dcidlen)); it != by_cid.end()) {
      conn = it->second;
    } else {
      conn = Accept(data, len);
      if (!conn) return;
    }
    conn->OnDatagram(data, len, link->rx_from);
    if (std::find(touched.begin(), touched.end(), conn) == touched.end()) touched.push_back(conn);
  }

  std::shared_ptr<QuicConnection> Accept(const std::uint8_t* data, std::size_t len) {
    ngtcp2_pkt_hd hd;
    if (ngtcp2_accept(&hd, data, len) != 0) return nullptr;  // not a usable Initial
    if (connections.size() >= kMaxConnections) return nullptr;
    std::shared_ptr<QuicConnection> conn;
    try {
      conn = QuicConnection::CreateServer(executor, link, local, link->rx_from, hd, options,
                                          credentials);
    } catch (const QuicError& e) {
      spdlog::warn("quic server: cannot accept a connection: {}", e.what());
      return nullptr;
    }
    std::weak_ptr<Core> weak = weak_from_this();
    QuicConnection* raw = conn.get();
    conn->on_new_cid_ = [weak, raw](const ngtcp2_cid& cid) {
      if (auto self = weak.lock()) {
        auto it = self->connections.find(raw);
        if (it != self->connections.end()) self->by_cid[CidKey(cid.data, cid.datalen)] = it->second;
      }
    };
    conn->on_retire_cid_ = [weak](const ngtcp2_cid& cid) {
      if (auto self = weak.lock()) self->by_cid.erase(CidKey(cid.data, cid.datalen));
    };
    conn->on_terminated_ = [weak, raw] {
      if (auto self = weak.lock()) self->Remove(raw);
    };
    conn->on_established_ = [weak, raw] {
      auto self = weak.lock();
      if (!self || self->closed) return;
      auto it = self->connections.find(raw);
      if (it == self->connections.end()) return;
      if (self->on_connection) self->on_connection(it->second);
    };
    connections[raw] = conn;
    by_cid[CidKey(hd.dcid.data, hd.dcid.datalen)] = conn;
    std::vector<ngtcp2_cid> scids(ngtcp2_conn_get_num_scid(conn->conn_));
    ngtcp2_conn_get_scid(conn->conn_, scids.data());
    for (const auto& cid : scids) by_cid[CidKey(cid.data, cid.datalen)] = conn;
    return conn;
  }

  void Remove(QuicConnection* raw) {
    auto it = connections.find(raw);
    if (it == connections.end()) return;
    if (!raw->established_) {
      spdlog::debug("quic server: handshake with {}:{} failed: {}",
                    raw->remote_.address().to_string(), raw->remote_.port(),
                    raw->close_info_.message);
    }
    for (auto c = by_cid.begin(); c != by_cid.end();) {
      if (c->second.get() == raw) {
        c = by_cid.erase(c);
      } else {
        ++c;
      }
    }
    connections.erase(it);
  }

  void SendVersionNegotiation(const ngtcp2_version_cid& vc) {
    std::uint8_t buf[256];
    std::uint8_t unused = 0;
    (void)gnutls_rnd(GNUTLS_RND_NONCE, &unused, 1);
    const std::uint32_t versions[] = {NGTCP2_PROTO_VER_V1};
    ngtcp2_ssize n = ngtcp2_pkt_write_version_negotiation(
        buf, sizeof buf, unused, vc.scid, vc.scidlen, vc.dcid, vc.dcidlen, versions, 1);
    if (n <= 0) return;
    error_code ec;
    link->socket.send_to(asio::buffer(buf, static_cast<std::size_t>(n)), link->rx_from, 0, ec);
  }

  void Close(std::uint64_t code, std::string_view reason) {
    if (closed) return;
    std::vector<std::shared_ptr<QuicConnection>> all;
    for (auto& [raw, conn] : connections) all.push_back(conn);
    for (auto& conn : all) conn->Close(code, reason);
    closed = true;
    connections.clear();
    by_cid.clear();
    error_code ec;
    link->socket.close(ec);
  }
};

QuicServer::QuicServer(asio::any_io_executor executor, udp::endpoint listen,
                       QuicServerOptions options, ConnectionHandler on_connection)
    : core_(std::make_shared<Core>()) {
  if (options.alpn.empty() || options.alpn.size() > 255) {
    throw QuicError(QuicErrc::kInvalidArgument, "alpn: must be 1 to 255 bytes");
  }
  core_->executor = executor;
  core_->credentials = TlsCredentials::ForServer(options);
  core_->options = std::move(options);
  core_->on_connection = std::move(on_connection);
  core_->link = std::make_shared<detail::UdpLink>(executor);
  error_code ec;
  auto& socket = core_->link->socket;
  socket.open(listen.protocol(), ec);
  if (!ec) socket.bind(listen, ec);
  if (!ec) socket.non_blocking(true, ec);
  if (!ec) core_->link->EnableGro();
  if (!ec) core_->link->SetBuffers(core_->options.transport.socket_buffer);
  if (!ec) core_->local = socket.local_endpoint(ec);
  if (ec) {
    throw QuicError(ec, "cannot listen on udp " + listen.address().to_string() + ":" +
                            std::to_string(listen.port()) + ": " + ec.message());
  }
  core_->StartReceive();
}

QuicServer::~QuicServer() {
  Close();
}

udp::endpoint QuicServer::local_endpoint() const {
  return core_->local;
}

std::size_t QuicServer::connection_count() const {
  return core_->connections.size();
}

void QuicServer::Close(std::uint64_t app_error_code, std::string_view reason) {
  core_->Close(app_error_code, reason);
}

}  // namespace tunnelkit::cloudflare::quic
