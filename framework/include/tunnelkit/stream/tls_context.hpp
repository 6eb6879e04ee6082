// TLS contexts for clients and servers. Clients verify the peer unless told otherwise.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <boost/asio/ssl/context.hpp>

namespace tunnelkit {

struct TlsClientOptions {
  // PEM file of trusted roots; empty = the system's default roots.
  std::string ca_file;
  // Skip verification entirely (logs a warning when the context is made). Never a default.
  bool insecure_skip_verify = false;
  // Client certificate and key (PEM) for mutual TLS; both or neither.
  std::string cert_file;
  std::string key_file;
  // ALPN protocols offered, in preference order (e.g. {"h2", "http/1.1"}).
  std::vector<std::string> alpn;
  // Refuse anything older than TLS 1.3 (a wire whose peers all speak it, e.g. ferro's).
  bool tls13_only = false;
};

struct TlsServerOptions {
  std::string cert_file;  // PEM chain, leaf first
  std::string key_file;   // PEM private key
  // PEM roots for client certificates; non-empty turns on mutual TLS (a client certificate is
  // required and verified).
  std::string client_ca_file;
  std::vector<std::string> alpn;  // accepted protocols, server preference order
  bool tls13_only = false;        // refuse anything older than TLS 1.3
};

// Both throw std::runtime_error naming the file and the OpenSSL reason when something cannot
// be loaded. Minimum version TLS 1.2 (1.3 with tls13_only); TLS 1.3 is negotiated when the peer
// supports it. Hostname checking happens per connection (TlsStream's server_name).
std::shared_ptr<boost::asio::ssl::context> MakeTlsClientContext(const TlsClientOptions& options);

// TLS 1.3 suites in the order AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305, and a server that
// chooses by its own order. OpenSSL's default puts AES-256 first: four more AES rounds per
// block for no practical gain, about a third of a tunnel's cipher time (OpenSSH's default
// aes128-gcm does the same). Every context made here uses it; backends with their own
// contexts call it too.
void PreferAes128Gcm(SSL_CTX* ctx);
std::shared_ptr<boost::asio::ssl::context> MakeTlsServerContext(const TlsServerOptions& options);

}  // namespace tunnelkit
