// A throwaway self-signed certificate for wss:// tests (openssl CLI, P-256, SAN localhost and
// 127.0.0.1), written to a fresh temporary folder.
#pragma once

#include <filesystem>
#include <string>

#include "process.hpp"

namespace tunnelkit::zlayer::test {

struct TestCert {
  std::filesystem::path dir;
  std::string cert;
  std::string key;
  bool ok = false;

  TestCert() {
    char pattern[] = "/tmp/zlayer-cert-XXXXXX";
    dir = mkdtemp(pattern);
    cert = (dir / "cert.pem").string();
    key = (dir / "key.pem").string();
    const auto r = tunnelkit::test::RunProcess(
        {"/usr/bin/openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext",
         "subjectAltName=DNS:localhost,DNS:127.0.0.1,IP:127.0.0.1", "-keyout", key, "-out", cert});
    ok = r.exit_status == 0;
  }
  ~TestCert() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

}  // namespace tunnelkit::zlayer::test
