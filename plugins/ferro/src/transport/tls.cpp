#include "transport/tls.hpp"

#include <stdexcept>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "tunnelkit/stream/tls_context.hpp"

namespace tunnelkit::ferro {

namespace ssl = boost::asio::ssl;

namespace {

std::string OpenSslReason(const boost::system::error_code& ec) {
  unsigned long code = ERR_peek_last_error();
  ERR_clear_error();
  if (code != 0) {
    char text[256];
    ERR_error_string_n(code, text, sizeof text);
    return text;
  }
  return ec.message();
}

std::shared_ptr<ssl::context> Tls13Context(ssl::context::method method) {
  auto context = std::make_shared<ssl::context>(method);
  SSL_CTX_set_min_proto_version(context->native_handle(), TLS1_3_VERSION);
  PreferAes128Gcm(context->native_handle());
  context->set_options(ssl::context::default_workarounds | ssl::context::no_compression);
  return context;
}

void Load(const char* what, const std::string& file, const std::function<void()>& load) {
  try {
    load();
  } catch (const boost::system::system_error& e) {
    throw std::runtime_error(std::string("cannot load ") + what + " " + file + ": " +
                             OpenSslReason(e.code()));
  }
}

}  // namespace

std::shared_ptr<ssl::context> MakeServerTlsContext(const ServerTlsSettings& settings) {
  auto context = Tls13Context(ssl::context::tls_server);
  Load("TLS certificate", settings.cert_file,
       [&] { context->use_certificate_chain_file(settings.cert_file); });
  Load("TLS key", settings.key_file,
       [&] { context->use_private_key_file(settings.key_file, ssl::context::pem); });
  if (!settings.client_ca.empty()) {
    Load("client CA", settings.client_ca, [&] { context->load_verify_file(settings.client_ca); });
    context->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
  }
  return context;
}

std::shared_ptr<ssl::context> MakeClientTlsContext(const ClientTlsSettings& settings) {
  auto context = Tls13Context(ssl::context::tls_client);
  if (settings.skip_verify) {
    context->set_verify_mode(ssl::verify_none);
  } else {
    if (settings.ca_file.empty()) {
      context->set_default_verify_paths();
    } else {
      Load("TLS CA", settings.ca_file, [&] { context->load_verify_file(settings.ca_file); });
    }
    context->set_verify_mode(ssl::verify_peer);
  }
  if (!settings.cert_file.empty()) {
    Load("TLS client certificate", settings.cert_file,
         [&] { context->use_certificate_chain_file(settings.cert_file); });
    Load("TLS client key", settings.key_file,
         [&] { context->use_private_key_file(settings.key_file, ssl::context::pem); });
  }
  return context;
}

}  // namespace tunnelkit::ferro
