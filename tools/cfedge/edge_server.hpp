// The processes's parts wired together on one io_context (KJ runs on it too).
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>

#include "emulator/certificates.hpp"
#include "emulator/edge_rpc_session.hpp"
#include "emulator/public_ingress.hpp"
#include "emulator/tunnel_registry.hpp"
#include "tunnelkit/cloudflare/wire/kjasio/asio_kj_loop.hpp"
#include "tunnelkit/net/listener.hpp"

namespace tunnelkit::cloudflare::cfedge {

struct EdgeServerOptions {
  std::string api_listen = "127.0.0.1:0";
  bool api_tls = false;
  bool rate_limit = false;
  bool reuse_tunnel = false;
  bool issue_bad_secret = false;         // the API reply carries a secret the edge will refuse
  std::vector<std::string> quic_listen;  // several: one process, distinct edge addresses
  std::string tcp_listen;
  std::string http_listen;
  std::string tcp_ingress;  // raw TCP -> type=tcp data streams
  std::string state_file;   // issued tunnels, kept across restarts
  std::chrono::milliseconds response_timeout{100'000};
  std::string write_ca;
  std::string ca_cert;
  std::string ca_key;
  std::vector<std::string> locations = {"lhr01"};
  std::string domain = "trycloudflare.com";
};

class EdgeServer {
 public:
  // Binds every listener (throws std::runtime_error naming the one that failed).
  EdgeServer(boost::asio::io_context& io, EdgeServerOptions options);
  ~EdgeServer();
  void Start();
  void Close();

  // Called for the control stream of each new client connection (any transport).
  void ServeControlStream(std::shared_ptr<Stream> stream,
                          std::shared_ptr<emulator::EdgeConnection> connection);

  emulator::TunnelRegistry& registry() { return registry_; }
  AsioKjLoop& kj_loop() { return *kj_loop_; }
  const emulator::PemPair& server_certificate() const { return server_cert_; }
  const std::string& cert_file() const { return cert_file_; }
  const std::string& key_file() const { return key_file_; }

  struct QuicListener;

 private:
  void AcceptTcpControl(boost::asio::ip::tcp::socket socket);
  void AcceptHttp(boost::asio::ip::tcp::socket socket);
  // POST /cfedge/drop?conn_index=N: closes that connection of every tunnel.
  std::string DropConnections(const std::string& target, unsigned& status);
  boost::asio::awaitable<void> ServeApi(boost::asio::ip::tcp::socket socket);

  boost::asio::io_context& io_;
  EdgeServerOptions options_;
  std::unique_ptr<AsioKjLoop> kj_loop_;
  emulator::TunnelRegistry registry_;
  emulator::PemPair ca_;
  emulator::PemPair server_cert_;
  std::string cert_file_;
  std::string key_file_;
  std::shared_ptr<boost::asio::ssl::context> api_tls_;
  std::unique_ptr<net::Listener> api_listener_;
  std::unique_ptr<net::Listener> tcp_listener_;
  std::unique_ptr<net::Listener> http_listener_;
  std::unique_ptr<net::Listener> tcp_ingress_listener_;
  std::unique_ptr<emulator::PublicIngress> ingress_;
  // shared_ptr: complete only in quic_listener.cpp
  std::vector<std::shared_ptr<QuicListener>> quic_;
  std::map<std::uint64_t, std::unique_ptr<emulator::EdgeRpcSession>> sessions_;
  std::uint64_t next_session_ = 0;
  bool closed_ = false;
};

// "IP:PORT" or "[IPV6]:PORT" (port 0: any) of a listen flag; throws naming the flag.
boost::asio::ip::tcp::endpoint ParseListen(const std::string& text, const char* flag);

// Starts the QUIC edge listener (quic_listener.cpp); throws when it cannot.
std::shared_ptr<EdgeServer::QuicListener> StartQuicListener(EdgeServer& server,
                                                            boost::asio::io_context& io,
                                                            const std::string& listen);
void CloseQuicListener(EdgeServer::QuicListener& listener);

}  // namespace tunnelkit::cloudflare::cfedge
