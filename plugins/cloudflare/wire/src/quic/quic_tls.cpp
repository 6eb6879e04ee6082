#include "quic_tls.hpp"

#include <cctype>

#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>

#include "tunnelkit/cloudflare/wire/quic/quic_error.hpp"

namespace tunnelkit::cloudflare::quic {
namespace {

[[noreturn]] void Fail(const std::string& what, int rv) {
  throw QuicError(QuicErrc::kInvalidArgument, what + ": " + gnutls_strerror(rv));
}

gnutls_datum_t Datum(const std::string& s) {
  return {reinterpret_cast<unsigned char*>(const_cast<char*>(s.data())),
          static_cast<unsigned int>(s.size())};
}

// Settings common to both roles; `session` is freed on failure.
void ConfigureCommon(gnutls_session_t session, const TlsCredentials& cred,
                     const std::string& alpn) {
  const char* err_pos = nullptr;
  int rv = gnutls_priority_set_direct(session, kQuicTlsPriority, &err_pos);
  if (rv != 0) {
    gnutls_deinit(session);
    Fail("gnutls priority string rejected", rv);
  }
  rv = gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, cred.get());
  if (rv != 0) {
    gnutls_deinit(session);
    Fail("gnutls_credentials_set", rv);
  }
  gnutls_datum_t proto = Datum(alpn);
  rv = gnutls_alpn_set_protocols(session, &proto, 1, GNUTLS_ALPN_MANDATORY);
  if (rv != 0) {
    gnutls_deinit(session);
    Fail("alpn", rv);
  }
}

}  // namespace

TlsCredentials::TlsCredentials() {
  int rv = gnutls_certificate_allocate_credentials(&cred_);
  if (rv != 0) Fail("gnutls_certificate_allocate_credentials", rv);
}

TlsCredentials::~TlsCredentials() {
  if (cred_ != nullptr) gnutls_certificate_free_credentials(cred_);
}

std::shared_ptr<TlsCredentials> TlsCredentials::ForClient(const QuicClientOptions& options) {
  std::shared_ptr<TlsCredentials> c(new TlsCredentials());
  int rv = 0;
  if (!options.ca_file.empty()) {
    rv = gnutls_certificate_set_x509_trust_file(c->cred_, options.ca_file.c_str(),
                                                GNUTLS_X509_FMT_PEM);
    if (rv <= 0) {
      throw QuicError(QuicErrc::kInvalidArgument,
                      "ca_file: no certificate loaded from " + options.ca_file +
                          (rv < 0 ? std::string(": ") + gnutls_strerror(rv) : std::string()));
    }
  }
  if (!options.ca_pem.empty()) {
    gnutls_datum_t pem = Datum(options.ca_pem);
    rv = gnutls_certificate_set_x509_trust_mem(c->cred_, &pem, GNUTLS_X509_FMT_PEM);
    if (rv <= 0) {
      throw QuicError(QuicErrc::kInvalidArgument,
                      "ca_pem: no certificate in the PEM text" +
                          (rv < 0 ? std::string(": ") + gnutls_strerror(rv) : std::string()));
    }
  }
  if (options.ca_file.empty() && options.ca_pem.empty()) {
    rv = gnutls_certificate_set_x509_system_trust(c->cred_);
    if (rv < 0) Fail("system trust store", rv);
  }
  return c;
}

std::shared_ptr<TlsCredentials> TlsCredentials::ForServer(const QuicServerOptions& options) {
  if (options.cert_file.empty() || options.key_file.empty()) {
    throw QuicError(QuicErrc::kInvalidArgument, "cert_file and key_file are required");
  }
  std::shared_ptr<TlsCredentials> c(new TlsCredentials());
  int rv = gnutls_certificate_set_x509_key_file(c->cred_, options.cert_file.c_str(),
                                                options.key_file.c_str(), GNUTLS_X509_FMT_PEM);
  if (rv < 0) {
    Fail("cannot load certificate " + options.cert_file + " with key " + options.key_file, rv);
  }
  return c;
}

gnutls_session_t NewClientSession(const TlsCredentials& cred, const QuicClientOptions& options) {
  gnutls_session_t session = nullptr;
  int rv = gnutls_init(&session, GNUTLS_CLIENT | GNUTLS_NO_END_OF_EARLY_DATA);
  if (rv != 0) Fail("gnutls_init", rv);
  if (ngtcp2_crypto_gnutls_configure_client_session(session) != 0) {
    gnutls_deinit(session);
    throw QuicError(QuicErrc::kHandshakeFailed, "ngtcp2_crypto_gnutls_configure_client_session");
  }
  ConfigureCommon(session, cred, options.alpn);
  rv = gnutls_server_name_set(session, GNUTLS_NAME_DNS, options.sni.data(), options.sni.size());
  if (rv != 0) {
    gnutls_deinit(session);
    Fail("sni", rv);
  }
  if (options.verify_peer) {
    // Chain to the configured roots and the SNI name; GnuTLS aborts the handshake otherwise.
    gnutls_session_set_verify_cert(session, options.sni.c_str(), 0);
  }
  return session;
}

gnutls_session_t NewServerSession(const TlsCredentials& cred, const QuicServerOptions& options) {
  gnutls_session_t session = nullptr;
  int rv = gnutls_init(&session, GNUTLS_SERVER | GNUTLS_NO_END_OF_EARLY_DATA);
  if (rv != 0) Fail("gnutls_init", rv);
  if (ngtcp2_crypto_gnutls_configure_server_session(session) != 0) {
    gnutls_deinit(session);
    throw QuicError(QuicErrc::kHandshakeFailed, "ngtcp2_crypto_gnutls_configure_server_session");
  }
  ConfigureCommon(session, cred, options.alpn);
  return session;
}

std::string VerificationFailure(gnutls_session_t session) {
  unsigned status = gnutls_session_get_verify_cert_status(session);
  if (status == 0) return {};
  gnutls_datum_t out{};
  if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &out, 0) != 0) {
    return "certificate rejected (status " + std::to_string(status) + ")";
  }
  std::string text(reinterpret_cast<const char*>(out.data), out.size);
  gnutls_free(out.data);
  return text;
}

std::string SelectedAlpn(gnutls_session_t session) {
  gnutls_datum_t proto{};
  if (gnutls_alpn_get_selected_protocol(session, &proto) != 0) return {};
  return std::string(reinterpret_cast<const char*>(proto.data), proto.size);
}

std::string TlsAlertName(std::uint8_t alert) {
  // GnuTLS names alerts like its enum ("GNUTLS_A_NO_APPLICATION_PROTOCOL"); print the RFC
  // 8446 spelling ("no_application_protocol").
  const char* name = gnutls_alert_get_strname(static_cast<gnutls_alert_description_t>(alert));
  if (name == nullptr) return "alert " + std::to_string(alert);
  std::string text(name);
  if (text.rfind("GNUTLS_A_", 0) == 0) text.erase(0, 9);
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

}  // namespace tunnelkit::cloudflare::quic
