#include "tunnelkit/stream/tls_context.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <stdexcept>

#include <spdlog/spdlog.h>

namespace tunnelkit {

namespace ssl = boost::asio::ssl;

namespace {

// The context plus the ALPN list its callback reads; the shared_ptr aliases the context.
struct ContextHolder {
  ContextHolder() : context(ssl::context::tls) {}
  ssl::context context;
  std::vector<unsigned char> alpn_wire;
};

std::string OpenSslReason() {
  unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "unknown error";
  char buf[256];
  ERR_error_string_n(code, buf, sizeof buf);
  return buf;
}

std::vector<unsigned char> AlpnWire(const std::vector<std::string>& protocols) {
  std::vector<unsigned char> wire;
  for (const auto& p : protocols) {
    if (p.empty() || p.size() > 255) throw std::runtime_error("invalid ALPN protocol '" + p + "'");
    wire.push_back(static_cast<unsigned char>(p.size()));
    wire.insert(wire.end(), p.begin(), p.end());
  }
  return wire;
}

std::shared_ptr<ContextHolder> NewHolder(bool tls13_only) {
  auto holder = std::make_shared<ContextHolder>();
  SSL_CTX* ctx = holder->context.native_handle();
  SSL_CTX_set_min_proto_version(ctx, tls13_only ? TLS1_3_VERSION : TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  PreferAes128Gcm(ctx);
  return holder;
}

}  // namespace

void PreferAes128Gcm(SSL_CTX* ctx) {
  SSL_CTX_set_ciphersuites(ctx,
                           "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
                           "TLS_CHACHA20_POLY1305_SHA256");
  SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
}

namespace {

void LoadCertificate(SSL_CTX* ctx, const std::string& cert_file, const std::string& key_file) {
  if (SSL_CTX_use_certificate_chain_file(ctx, cert_file.c_str()) != 1) {
    throw std::runtime_error("cannot load certificate " + cert_file + ": " + OpenSslReason());
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    throw std::runtime_error("cannot load private key " + key_file + ": " + OpenSslReason());
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    throw std::runtime_error("private key " + key_file + " does not match " + cert_file);
  }
}

int SelectAlpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
               unsigned int inlen, void* arg) {
  auto* holder = static_cast<ContextHolder*>(arg);
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, outlen, holder->alpn_wire.data(),
                            static_cast<unsigned int>(holder->alpn_wire.size()), in,
                            inlen) != OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

}  // namespace

std::shared_ptr<ssl::context> MakeTlsClientContext(const TlsClientOptions& options) {
  auto holder = NewHolder(options.tls13_only);
  SSL_CTX* ctx = holder->context.native_handle();
  if (options.insecure_skip_verify) {
    spdlog::warn(
        "TLS peer verification is DISABLED (insecure mode): the connection can be intercepted");
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  } else {
    if (options.ca_file.empty()) {
      if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        throw std::runtime_error("cannot load the system's trusted roots: " + OpenSslReason());
      }
    } else if (SSL_CTX_load_verify_locations(ctx, options.ca_file.c_str(), nullptr) != 1) {
      throw std::runtime_error("cannot load CA file " + options.ca_file + ": " + OpenSslReason());
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  }
  if (options.cert_file.empty() != options.key_file.empty()) {
    throw std::runtime_error("client certificate and key must be given together");
  }
  if (!options.cert_file.empty()) LoadCertificate(ctx, options.cert_file, options.key_file);
  if (!options.alpn.empty()) {
    auto wire = AlpnWire(options.alpn);
    if (SSL_CTX_set_alpn_protos(ctx, wire.data(), static_cast<unsigned int>(wire.size())) != 0) {
      throw std::runtime_error("cannot set ALPN: " + OpenSslReason());
    }
  }
  return std::shared_ptr<ssl::context>(holder, &holder->context);
}

std::shared_ptr<ssl::context> MakeTlsServerContext(const TlsServerOptions& options) {
  auto holder = NewHolder(options.tls13_only);
  SSL_CTX* ctx = holder->context.native_handle();
  if (options.cert_file.empty() || options.key_file.empty()) {
    throw std::runtime_error("a TLS server needs a certificate and a key file");
  }
  LoadCertificate(ctx, options.cert_file, options.key_file);
  if (!options.client_ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx, options.client_ca_file.c_str(), nullptr) != 1) {
      throw std::runtime_error("cannot load client CA file " + options.client_ca_file + ": " +
                               OpenSslReason());
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  if (!options.alpn.empty()) {
    holder->alpn_wire = AlpnWire(options.alpn);
    SSL_CTX_set_alpn_select_cb(ctx, SelectAlpn, holder.get());
  }
  return std::shared_ptr<ssl::context>(holder, &holder->context);
}

}  // namespace tunnelkit
