#include "edge_server.hpp"

#include <cstdio>
#include <filesystem>

#include <unistd.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include "emulator/tunnel_state.hpp"
#include "tunnelkit/cloudflare/wire/api/quick_tunnel.hpp"
#include "tunnelkit/net/ip_port.hpp"
#include "tunnelkit/stream/asio_adapter.hpp"
#include "tunnelkit/stream/socket_stream.hpp"
#include "tunnelkit/stream/tls_context.hpp"
#include "tunnelkit/stream/tls_stream.hpp"

namespace tunnelkit::cloudflare::cfedge {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using asio::ip::tcp;

namespace {

void Print(const std::string& line) {
  std::fprintf(stdout, "%s\n", line.c_str());
  std::fflush(stdout);
}

std::unique_ptr<net::Listener> Listen(asio::io_context& io, const std::string& text,
                                      const char* flag) {
  auto endpoint = ParseListen(text, flag);
  auto listener = std::make_unique<net::Listener>(io.get_executor());
  if (const auto ec = listener->Open(endpoint)) {
    throw std::runtime_error(std::string(flag) + " " + text + ": " + ec.message());
  }
  return listener;
}

std::string Where(const net::Listener& listener) {
  auto endpoint = listener.local_endpoint();
  auto address = endpoint.address();
  std::string host = address.is_v6() ? "[" + address.to_string() + "]" : address.to_string();
  return host + ":" + std::to_string(endpoint.port());
}

// The plain-TCP test transport: the control stream only (OpenDataStream keeps the base class's
// error). Drop resets the socket.
class TcpConnection final : public emulator::EdgeConnection {
 public:
  explicit TcpConnection(const std::shared_ptr<Stream>& stream)
      : stream_(stream), description_(stream->Describe()) {}
  std::string Describe() const override { return description_; }
  void Drop() override {
    if (auto stream = stream_.lock()) stream->Reset();
  }

 private:
  std::weak_ptr<Stream> stream_;
  std::string description_;
};

template <typename Body>
asio::awaitable<void> Respond(Stream& stream, const http::request<http::string_body>& request,
                              http::response<Body>& response) {
  response.version(request.version());
  response.keep_alive(false);
  response.set(http::field::server, "cfedge");
  response.prepare_payload();
  StreamRef ref(stream);
  boost::system::error_code ec;
  co_await http::async_write(ref, response, asio::redirect_error(asio::use_awaitable, ec));
  co_await stream.ShutdownWrite();
}

}  // namespace

tcp::endpoint ParseListen(const std::string& text, const char* flag) {
  auto endpoint = net::ParseIpPort(text, /*allow_port_zero=*/true);
  if (!endpoint) throw std::runtime_error(std::string(flag) + ": " + endpoint.message());
  return *endpoint;
}

EdgeServer::EdgeServer(asio::io_context& io, EdgeServerOptions options)
    : io_(io),
      options_(std::move(options)),
      kj_loop_(std::make_unique<AsioKjLoop>(io)),
      registry_(emulator::TunnelRegistry::Options{options_.domain, options_.locations,
                                                  options_.reuse_tunnel}) {
  registry_.on_event = [](const std::string& line) { Print(line); };
  if (!options_.state_file.empty()) {
    for (const auto& tunnel : emulator::LoadTunnels(options_.state_file)) registry_.Add(tunnel);
  }
  emulator::PublicIngressOptions ingress;
  ingress.response_timeout = options_.response_timeout;
  ingress.on_event = [](const std::string& line) { Print(line); };
  ingress_ = std::make_unique<emulator::PublicIngress>(registry_, std::move(ingress));
  kj_loop_->SetTaskErrorHandler([](const kj::Exception& e) {
    std::fprintf(stderr, "cfedge: rpc task failed: %s\n", e.getDescription().cStr());
  });
  // Certificates: the CA (generated or given), then one server certificate for the edge name
  // and for the loopback API.
  if (!options_.ca_cert.empty()) {
    ca_ = {emulator::ReadFile(options_.ca_cert), emulator::ReadFile(options_.ca_key)};
  } else {
    ca_ = emulator::GenerateCa("cfedge test CA");
  }
  if (!options_.write_ca.empty()) emulator::WriteFile(options_.write_ca, ca_.certificate);
  server_cert_ = emulator::IssueServerCertificate(
      ca_, {"quic.cftunnel.com", "localhost", "api.trycloudflare.com"}, {"127.0.0.1", "::1"});
  // The QUIC and TLS stacks load certificates from files: keep them in a private temp folder.
  auto folder = std::filesystem::temp_directory_path() / ("cfedge-" + std::to_string(::getpid()));
  std::filesystem::create_directories(folder);
  std::filesystem::permissions(folder, std::filesystem::perms::owner_all);
  cert_file_ = (folder / "server.pem").string();
  key_file_ = (folder / "server.key").string();
  emulator::WriteFile(cert_file_, server_cert_.certificate);
  emulator::WriteFile(key_file_, server_cert_.private_key, true);

  api_listener_ = Listen(io_, options_.api_listen, "--api-listen");
  if (options_.api_tls) {
    TlsServerOptions tls;
    tls.cert_file = cert_file_;
    tls.key_file = key_file_;
    api_tls_ = MakeTlsServerContext(tls);
  }
  if (!options_.tcp_listen.empty())
    tcp_listener_ = Listen(io_, options_.tcp_listen, "--tcp-listen");
  if (!options_.http_listen.empty())
    http_listener_ = Listen(io_, options_.http_listen, "--http-listen");
  if (!options_.tcp_ingress.empty())
    tcp_ingress_listener_ = Listen(io_, options_.tcp_ingress, "--tcp-ingress");
  for (const auto& listen : options_.quic_listen) {
    quic_.push_back(StartQuicListener(*this, io_, listen));
  }
}

EdgeServer::~EdgeServer() {
  Close();
  sessions_.clear();
  std::error_code ec;
  std::filesystem::remove_all(std::filesystem::path(cert_file_).parent_path(), ec);
}

void EdgeServer::Start() {
  // The listeners close in Close (and so in the destructor): the handlers never outlive this.
  net::ListenerOptions listener_options;
  Print(std::string("api ") + (options_.api_tls ? "https://" : "http://") + Where(*api_listener_));
  listener_options.name = "cfedge api";
  api_listener_->Start(
      [this](tcp::socket socket) {
        asio::co_spawn(io_, ServeApi(std::move(socket)), asio::detached);
      },
      listener_options);
  if (tcp_listener_) {
    Print("edge tcp " + Where(*tcp_listener_));
    listener_options.name = "cfedge edge tcp";
    tcp_listener_->Start([this](tcp::socket socket) { AcceptTcpControl(std::move(socket)); },
                         listener_options);
  }
  if (http_listener_) {
    Print("http " + Where(*http_listener_));
    listener_options.name = "cfedge http";
    http_listener_->Start([this](tcp::socket socket) { AcceptHttp(std::move(socket)); },
                          listener_options);
  }
  if (tcp_ingress_listener_) {
    Print("tcp ingress " + Where(*tcp_ingress_listener_));
    listener_options.name = "cfedge tcp ingress";
    const unsigned port = tcp_ingress_listener_->port();
    tcp_ingress_listener_->Start(
        [this, port](tcp::socket socket) {
          asio::co_spawn(io_,
                         ingress_->ServeTcp(std::make_unique<TcpStream>(std::move(socket)), port),
                         asio::detached);
        },
        listener_options);
  }
  if (!options_.state_file.empty()) {
    Print("state " + options_.state_file + " tunnels=" + std::to_string(registry_.issued()));
  }
  Print("ready");
}

void EdgeServer::Close() {
  if (closed_) return;
  closed_ = true;
  for (auto* listener : {api_listener_.get(), tcp_listener_.get(), http_listener_.get(),
                         tcp_ingress_listener_.get()}) {
    if (listener) listener->Close();
  }
  for (auto& listener : quic_) CloseQuicListener(*listener);
}

void EdgeServer::ServeControlStream(std::shared_ptr<Stream> stream,
                                    std::shared_ptr<emulator::EdgeConnection> connection) {
  std::uint64_t id = next_session_++;
  auto session = std::make_unique<emulator::EdgeRpcSession>(*kj_loop_, registry_, std::move(stream),
                                                            connection);
  auto disconnected = session->OnDisconnect();
  sessions_[id] = std::move(session);
  // The session ends with its stream; the connection object lives as long as the session.
  auto finish = [this, id, connection] {
    // Destroying the session from inside its own continuation is not allowed: defer it.
    asio::post(io_, [this, id] { sessions_.erase(id); });
  };
  // Both by value: then() takes its functor by forwarding reference, so a named lambda passed as
  // an lvalue would be kept as a reference to this stack frame.
  auto on_error = [finish](kj::Exception&&) { finish(); };
  kj_loop_->AddTask(disconnected.then(std::move(finish), std::move(on_error)));
}

asio::awaitable<void> EdgeServer::ServeApi(tcp::socket socket) {
  std::unique_ptr<Stream> stream;
  if (api_tls_) {
    auto tls = std::make_unique<TlsStream>(std::move(socket), *api_tls_, TlsStream::Role::kServer);
    auto ec = co_await tls->Handshake();
    if (ec) {
      std::fprintf(stderr, "cfedge: api TLS handshake failed: %s\n",
                   (tls->LastError().empty() ? ec.message() : tls->LastError()).c_str());
      co_return;
    }
    stream = std::move(tls);
  } else {
    stream = std::make_unique<TcpStream>(std::move(socket));
  }
  boost::beast::flat_buffer buffer;
  http::request_parser<http::string_body> parser;
  parser.body_limit(64 * 1024);
  boost::system::error_code ec;
  StreamRef ref(*stream);
  co_await http::async_read(ref, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return;
  const auto& request = parser.get();
  http::response<http::string_body> response;
  response.set(http::field::content_type, "application/json");
  std::string target(request.target());
  if (target.rfind("/cfedge/drop", 0) == 0) {
    unsigned status = 200;
    if (request.method() != http::verb::post) {
      status = 405;
      response.body() = R"({"success":false,"errors":[{"code":405,"message":"use POST"}]})";
    } else {
      response.body() = DropConnections(target, status);
    }
    response.result(status);
  } else if (target != "/tunnel") {
    response.result(http::status::not_found);
    response.body() = R"({"success":false,"errors":[{"code":404,"message":"not found"}]})";
  } else if (request.method() != http::verb::post) {
    response.result(http::status::method_not_allowed);
    response.body() = R"({"success":false,"errors":[{"code":405,"message":"use POST"}]})";
  } else if (options_.rate_limit) {
    // What the real service sends when it rate limits: a non-JSON body.
    response.result(http::status::too_many_requests);
    response.set(http::field::content_type, "text/plain; charset=UTF-8");
    response.set(http::field::retry_after, "60");
    response.body() = "error code: 1015";
    Print("api rate-limited POST /tunnel");
  } else {
    QuickTunnel tunnel = registry_.Issue();
    if (!options_.state_file.empty()) {
      try {
        emulator::SaveTunnels(options_.state_file, registry_.tunnels());
      } catch (const std::exception& e) {
        std::fprintf(stderr, "cfedge: %s\n", e.what());
      }
    }
    QuickTunnel reply = tunnel;
    if (options_.issue_bad_secret) reply.credentials.secret[0] ^= 0xff;
    response.result(http::status::ok);
    response.body() = BuildQuickTunnelReply(reply);
    Print("issued tunnel=" + FormatUuid(tunnel.credentials.tunnel_id) +
          " hostname=" + tunnel.hostname + " user_agent=\"" +
          std::string(request[http::field::user_agent]) + "\"");
  }
  co_await Respond(*stream, request, response);
}

void EdgeServer::AcceptTcpControl(tcp::socket socket) {
  std::shared_ptr<Stream> stream = std::make_shared<TcpStream>(std::move(socket));
  auto connection = std::make_shared<TcpConnection>(stream);
  ServeControlStream(stream, connection);
}

void EdgeServer::AcceptHttp(tcp::socket socket) {
  boost::system::error_code ec;
  std::string visitor_ip = socket.remote_endpoint(ec).address().to_string();
  asio::co_spawn(
      io_,
      ingress_->ServeHttp(std::make_unique<TcpStream>(std::move(socket)), std::move(visitor_ip)),
      asio::detached);
}

std::string EdgeServer::DropConnections(const std::string& target, unsigned& status) {
  auto query = target.find("conn_index=");
  std::string digits = query == std::string::npos ? "" : target.substr(query + 11);
  digits = digits.substr(0, digits.find('&'));
  if (digits.empty() || digits.size() > 3 ||
      digits.find_first_not_of("0123456789") != std::string::npos || std::stoi(digits) > 255) {
    status = 400;
    return R"({"success":false,"errors":[{"code":400,"message":"conn_index=N (0-255) needed"}]})";
  }
  const int index = std::stoi(digits);
  int dropped = 0;
  std::string tunnels;
  for (const auto& registration : registry_.registrations()) {
    if (registration.conn_index != index) continue;
    auto connection = registration.connection.lock();
    if (!connection) continue;
    connection->Drop();
    ++dropped;
    tunnels += " tunnel=" + FormatUuid(registration.tunnel_id);
  }
  Print("dropped conn_index=" + digits + " count=" + std::to_string(dropped) + tunnels);
  status = 200;
  return R"({"success":true,"dropped":)" + std::to_string(dropped) + "}";
}

}  // namespace tunnelkit::cloudflare::cfedge
