// Certificates for the edge emulator: a private CA (EC P-256, as the edge's chain) and leaf
// certificates it signs, e.g. for quic.cftunnel.com (the name clients check on the QUIC
// handshake) and for the API's host names. PEM in, PEM out; OpenSSL 3.
#pragma once

#include <string>
#include <vector>

namespace tunnelkit::cloudflare::emulator {

struct PemPair {
  std::string certificate;
  std::string private_key;
};

// A self-signed CA certificate valid for `days`. Throws std::runtime_error on OpenSSL failure.
PemPair GenerateCa(const std::string& common_name, int days = 30);

// A server certificate signed by `ca` with the given DNS names and IP addresses as
// subjectAltName (the first DNS name is also the CN). Throws std::runtime_error when the CA
// cannot be parsed or signing fails.
PemPair IssueServerCertificate(const PemPair& ca, const std::vector<std::string>& dns_names,
                               const std::vector<std::string>& ip_addresses, int days = 30);

// Writes text to a file (mode 0600 for keys); throws std::runtime_error naming the file.
void WriteFile(const std::string& path, const std::string& text, bool secret = false);
std::string ReadFile(const std::string& path);

}  // namespace tunnelkit::cloudflare::emulator
