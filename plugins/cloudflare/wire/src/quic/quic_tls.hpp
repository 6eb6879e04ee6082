// GnuTLS pieces of the QUIC layer: credentials (trust roots or certificate + key) and sessions
// configured for ngtcp2_crypto_gnutls. Internal to the QUIC layer.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <gnutls/gnutls.h>

#include "tunnelkit/cloudflare/wire/quic/quic_options.hpp"

namespace tunnelkit::cloudflare::quic {

// TLS 1.3 only, AEADs QUIC allows, key exchange on P-256 and X25519 (P-256 first: cloudflared
// 2023.7.3 offers nothing else). Middlebox compatibility mode must be off for QUIC.
inline constexpr const char* kQuicTlsPriority =
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305:"
    "+AES-128-CCM:-GROUP-ALL:+GROUP-SECP256R1:+GROUP-X25519:%DISABLE_TLS13_COMPAT_MODE";

class TlsCredentials {
 public:
  // Throw QuicError naming the file or field that could not be used.
  static std::shared_ptr<TlsCredentials> ForClient(const QuicClientOptions& options);
  static std::shared_ptr<TlsCredentials> ForServer(const QuicServerOptions& options);

  ~TlsCredentials();
  TlsCredentials(const TlsCredentials&) = delete;
  TlsCredentials& operator=(const TlsCredentials&) = delete;

  gnutls_certificate_credentials_t get() const { return cred_; }

 private:
  TlsCredentials();
  gnutls_certificate_credentials_t cred_ = nullptr;
};

// A session set up for QUIC (hooks installed by ngtcp2_crypto_gnutls), with priority, ALPN
// (mandatory), credentials and, for clients, SNI and certificate verification. The caller
// still has to gnutls_session_set_ptr() the ngtcp2_crypto_conn_ref. Throws QuicError.
gnutls_session_t NewClientSession(const TlsCredentials& cred, const QuicClientOptions& options);
gnutls_session_t NewServerSession(const TlsCredentials& cred, const QuicServerOptions& options);

// "The certificate is NOT trusted. ..." when automatic verification rejected the peer's
// certificate; empty otherwise.
std::string VerificationFailure(gnutls_session_t session);

// The negotiated ALPN protocol, or empty.
std::string SelectedAlpn(gnutls_session_t session);

// Name of a TLS alert ("no_application_protocol" style text from GnuTLS).
std::string TlsAlertName(std::uint8_t alert);

}  // namespace tunnelkit::cloudflare::quic
