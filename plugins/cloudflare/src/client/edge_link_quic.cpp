// The QUIC edge link: ALPN argotunnel, SNI quic.cftunnel.com, trust = system roots plus
// Cloudflare's edge CAs, or only --edge-ca when given (as cloudflared's --cacert).
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <stdexcept>

#include "client/cloudflare_roots.hpp"
#include "client/edge_link.hpp"
#include "tunnelkit/cloudflare/wire/quic/quic_client.hpp"
#include "tunnelkit/cloudflare/wire/quic/quic_error.hpp"
#include "tunnelkit/cloudflare/wire/quic/quic_stream.hpp"

namespace tunnelkit::cloudflare {

namespace asio = boost::asio;

namespace {

class QuicEdgeLink final : public EdgeLink {
 public:
  explicit QuicEdgeLink(std::shared_ptr<quic::QuicConnection> connection)
      : connection_(std::move(connection)) {}
  ~QuicEdgeLink() override { connection_->Close(0); }

  asio::awaitable<std::shared_ptr<Stream>> OpenControlStream() override {
    co_return co_await connection_->OpenStream();
  }
  void SetStreamHandler(std::function<void(std::shared_ptr<Stream>)> handler) override {
    connection_->SetStreamHandler(
        [handler = std::move(handler)](std::shared_ptr<quic::QuicStream> stream) {
          handler(std::move(stream));
        });
  }
  void Close() override { connection_->Close(0); }
  std::string RemoteIp() const override {
    return connection_->remote_endpoint().address().to_string();
  }
  std::string Describe() const override { return connection_->Describe(); }

 private:
  std::shared_ptr<quic::QuicConnection> connection_;
};

}  // namespace

asio::awaitable<std::unique_ptr<EdgeLink>> DialQuicEdge(asio::any_io_executor executor,
                                                        const EdgeAddress& address,
                                                        const EdgeDialOptions& options) {
  asio::ip::udp::resolver resolver(executor);
  boost::system::error_code ec;
  auto results = co_await resolver.async_resolve(address.host, address.port,
                                                 asio::redirect_error(asio::use_awaitable, ec));
  if (ec || results.empty())
    throw std::runtime_error("cannot resolve " + address.host + ": " + ec.message());
  quic::QuicClientOptions quic_options;
  if (!options.ca_file.empty()) {
    quic_options.ca_file = options.ca_file;
  } else {
    quic_options.ca_pem = DefaultEdgeRootsPem();
  }
  auto connection =
      co_await quic::QuicClient::Connect(executor, results.begin()->endpoint(), quic_options);
  co_return std::make_unique<QuicEdgeLink>(std::move(connection));
}

}  // namespace tunnelkit::cloudflare
