// TLS contexts for the control connection (OpenSSL through Boost.Asio): TLS 1.3 only,
// peers verified unless the client is explicitly told not to.
#pragma once

#include <memory>
#include <string>

#include <boost/asio/ssl/context.hpp>

namespace tunnelkit::ferro {

struct ServerTlsSettings {
  std::string cert_file;  // PEM chain
  std::string key_file;   // PEM key
  std::string client_ca;  // when set: client certificates are required and checked (mTLS)
};

struct ClientTlsSettings {
  std::string ca_file;    // PEM roots; empty: the system's default roots
  std::string cert_file;  // client certificate for mTLS (optional)
  std::string key_file;
  bool skip_verify = false;  // explicit opt-out; the caller logs the warning
};

// Both throw std::runtime_error naming the file and OpenSSL's reason.
std::shared_ptr<boost::asio::ssl::context> MakeServerTlsContext(const ServerTlsSettings& settings);
std::shared_ptr<boost::asio::ssl::context> MakeClientTlsContext(const ClientTlsSettings& settings);

}  // namespace tunnelkit::ferro
