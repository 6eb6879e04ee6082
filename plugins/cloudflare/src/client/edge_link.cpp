#include "client/edge_link.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <stdexcept>

#include "tunnelkit/stream/socket_stream.hpp"

namespace tunnelkit::cloudflare {

namespace asio = boost::asio;

std::string EdgeAddress::Describe() const {
  std::string hostport =
      host.find(':') != std::string::npos ? "[" + host + "]:" + port : host + ":" + port;
  return transport == Transport::kTcp ? "tcp://" + hostport : hostport;
}

EdgeAddress ParseEdgeAddress(const std::string& text, std::string& error) {
  EdgeAddress address;
  std::string rest = text;
  if (rest.rfind("tcp://", 0) == 0) {
    address.transport = EdgeAddress::Transport::kTcp;
    rest = rest.substr(6);
  } else if (rest.rfind("quic://", 0) == 0) {
    rest = rest.substr(7);
  }
  if (!rest.empty() && rest.front() == '[') {
    auto close = rest.find(']');
    if (close == std::string::npos || close + 1 >= rest.size() || rest[close + 1] != ':') {
      error = "edge address must be HOST:PORT: " + text;
      return address;
    }
    address.host = rest.substr(1, close - 1);
    address.port = rest.substr(close + 2);
  } else {
    auto colon = rest.rfind(':');
    if (colon == std::string::npos || rest.find(':') != colon) {
      error = "edge address must be HOST:PORT: " + text;
      return address;
    }
    address.host = rest.substr(0, colon);
    address.port = rest.substr(colon + 1);
  }
  bool digits = !address.port.empty() && address.port.size() <= 5;
  for (char c : address.port) digits = digits && c >= '0' && c <= '9';
  if (address.host.empty() || !digits || std::stoi(address.port) == 0 ||
      std::stoi(address.port) > 65535) {
    error = "edge address must be HOST:PORT with a port in 1..65535: " + text;
  }
  return address;
}

namespace {

class TcpEdgeLink final : public EdgeLink {
 public:
  explicit TcpEdgeLink(std::shared_ptr<TcpStream> stream) : stream_(std::move(stream)) {
    boost::system::error_code ec;
    auto remote = stream_->socket().remote_endpoint(ec);
    if (!ec) remote_ip_ = remote.address().to_string();
    description_ = "tcp " + stream_->Describe();
  }
  asio::awaitable<std::shared_ptr<Stream>> OpenControlStream() override {
    if (opened_) throw std::runtime_error("the tcp test transport carries only the control stream");
    opened_ = true;
    co_return stream_;
  }
  void SetStreamHandler(std::function<void(std::shared_ptr<Stream>)>) override {}
  void Close() override { stream_->Reset(); }
  std::string RemoteIp() const override { return remote_ip_; }
  std::string Describe() const override { return description_; }

 private:
  std::shared_ptr<TcpStream> stream_;
  bool opened_ = false;
  std::string remote_ip_;
  std::string description_;
};

}  // namespace

// Defined in edge_link_quic.cpp.
asio::awaitable<std::unique_ptr<EdgeLink>> DialQuicEdge(asio::any_io_executor executor,
                                                        const EdgeAddress& address,
                                                        const EdgeDialOptions& options);

asio::awaitable<std::unique_ptr<EdgeLink>> DialEdge(asio::any_io_executor executor,
                                                    const EdgeAddress& address,
                                                    const EdgeDialOptions& options) {
  if (address.transport == EdgeAddress::Transport::kQuic) {
    co_return co_await DialQuicEdge(executor, address, options);
  }
  boost::system::error_code ec;
  auto stream =
      co_await ConnectTcpStream(executor, address.host, address.port, options.timeout, ec);
  if (ec || !stream) throw std::runtime_error(ec.message());
  co_return std::make_unique<TcpEdgeLink>(std::shared_ptr<TcpStream>(std::move(stream)));
}

}  // namespace tunnelkit::cloudflare
