#include "tunnelkit/admin/admin_server.hpp"

#include <chrono>

#include <spdlog/spdlog.h>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>

#include "admin_exchange.hpp"
#include "tunnelkit/config/config_loader.hpp"
#include "tunnelkit/metrics/registry.hpp"

namespace tunnelkit::admin {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr auto kIdleTimeout = std::chrono::seconds(30);

std::string ReadyJson(unsigned status, std::uint32_t connections) {
  return "{\"status\":" + std::to_string(status) +
         ",\"readyConnections\":" + std::to_string(connections) + "}";
}

}  // namespace

class AdminServer::Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(AdminServer& server, tcp::socket socket)
      : server_(&server), stream_(std::move(socket)) {}

  void Start() { Read(); }
  // The server is going away or stopping: close, and never touch the server again.
  void Detach() {
    server_ = nullptr;
    Close();
  }
  void Close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.close();
  }

 private:
  void Read() {
    parser_.emplace();
    LimitRequest(*parser_);
    stream_.expires_after(kIdleTimeout);
    http::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, std::size_t) { self->OnRead(ec); });
  }

  void OnRead(beast::error_code ec) {
    if (!server_) return Close();
    if (ec) {
      if (ec != http::error::end_of_stream && ec != asio::error::operation_aborted &&
          ec != beast::error::timeout && ec != asio::error::eof && server_->logger_) {
        server_->logger_->debug("admin: closing connection: {}", ec.message());
      }
      return Finish();
    }
    auto response = std::make_shared<AdminResponse>(Respond(
        parser_->get(), [this](const std::string& target) { return server_->Handle(target); }));
    const bool keep = response->keep_alive();
    http::async_write(
        stream_, *response,
        [self = shared_from_this(), response, keep](beast::error_code wec, std::size_t) {
          if (wec || !keep || !self->server_) return self->Finish();
          self->Read();
        });
  }

  void Finish() {
    Close();
    if (server_) server_->connections_.erase(shared_from_this());
  }

  AdminServer* server_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::empty_body>> parser_;
};

AdminServer::AdminServer(asio::io_context& io, metrics::Registry& registry,
                         std::shared_ptr<spdlog::logger> logger)
    : io_(io), registry_(registry), logger_(std::move(logger)), listener_(io.get_executor()) {}

AdminServer::~AdminServer() {
  // Connections hold a reference to this server; close them before it goes away. Their
  // pending handlers still own them and find the socket closed.
  Stop();
}

std::string AdminServer::Listen(const std::string& host_port) {
  if (auto reason = config::CheckHostPort(host_port, 0); !reason.empty()) {
    return host_port + ": " + reason;
  }
  auto colon = host_port.rfind(':');
  std::string host = host_port.substr(0, colon);
  const auto port = static_cast<unsigned short>(std::stoi(host_port.substr(colon + 1)));
  if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  boost::system::error_code ec;
  tcp::endpoint endpoint;
  auto address = asio::ip::make_address(host, ec);
  if (!ec) {
    endpoint = tcp::endpoint(address, port);
  } else {
    tcp::resolver resolver(io_);
    auto results = resolver.resolve(host, std::to_string(port), ec);
    if (ec || results.empty()) return host_port + ": cannot resolve " + host + ": " + ec.message();
    endpoint = results.begin()->endpoint();
  }
  std::string error;
  if (!listener_.Open(endpoint, error)) return error;  // names the address already
  endpoint_ = listener_.local_endpoint();
  stopped_ = false;
  net::ListenerOptions options;
  options.name = "admin";
  options.logger = logger_;
  // The listener closes in Stop (and so in the destructor): the handler never outlives this.
  listener_.Start(
      [this](tcp::socket socket) {
        if (stopped_) return;
        auto connection = std::make_shared<Connection>(*this, std::move(socket));
        connections_.insert(connection);
        connection->Start();
      },
      options);
  return {};
}

void AdminServer::Stop() {
  stopped_ = true;
  listener_.Close();
  auto open = std::move(connections_);
  connections_.clear();
  for (const auto& connection : open) connection->Detach();
}

void AdminServer::AddRoute(const std::string& path, Handler handler) {
  routes_[path] = std::move(handler);
}

void AdminServer::AddJsonRoute(const std::string& path, JsonHandler handler) {
  routes_[path] = [handler = std::move(handler)] {
    return Response{200, "application/json", handler()};
  };
}

void AdminServer::SetReadiness(std::function<Readiness()> readiness) {
  readiness_ = std::move(readiness);
}

void AdminServer::SetTunnels(JsonHandler tunnels_json_array) {
  tunnels_ = std::move(tunnels_json_array);
}

Response AdminServer::Handle(const std::string& target) const {
  const std::string path = target.substr(0, target.find('?'));
  if (auto it = routes_.find(path); it != routes_.end()) {
    try {
      return it->second();
    } catch (const std::exception& e) {
      if (logger_) logger_->warn("admin: handler for {} failed: {}", path, e.what());
      return Response{500, "text/plain", "internal error\n"};
    }
  }
  if (path == "/metrics") return Response{200, metrics::Registry::kContentType, registry_.Expose()};
  if (path == "/healthz") return Response{200, "text/plain", "ok"};
  if (path == "/ready") {
    Readiness state = readiness_ ? readiness_() : Readiness{};
    const unsigned status = state.ready ? 200 : 503;
    return Response{status, "application/json", ReadyJson(status, state.connections)};
  }
  if (path == "/tunnels") return Response{200, "application/json", tunnels_ ? tunnels_() : "[]"};
  return Response{404, "text/plain", "not found\n"};
}

}  // namespace tunnelkit::admin
