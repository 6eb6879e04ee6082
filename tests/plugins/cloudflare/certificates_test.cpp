// Trust material: the built-in Cloudflare edge roots, and the emulator's CA and server
// certificates (a client must be able to verify quic.cftunnel.com against the written CA).
#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <memory>
#include <string>
#include <vector>

#include "client/cloudflare_roots.hpp"
#include "emulator/certificates.hpp"

namespace tunnelkit::cloudflare {
namespace {

std::vector<X509*> ParseAll(const std::string& pem) {
  std::vector<X509*> out;
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  while (X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) out.push_back(cert);
  BIO_free(bio);
  return out;
}

std::string Subject(X509* cert) {
  char buf[512];
  X509_NAME_oneline(X509_get_subject_name(cert), buf, sizeof buf);
  return buf;
}

TEST(CloudflareRoots, ThreeSelfSignedCasValidUntil2029) {
  auto certs = ParseAll(CloudflareEdgeRootsPem());
  ASSERT_EQ(certs.size(), 3u);
  const char* names[] = {"CloudFlare Origin SSL ECC Certificate Authority",
                         "CloudFlare Origin SSL Certificate Authority",
                         "origin-pull.cloudflare.net"};
  for (std::size_t i = 0; i < certs.size(); ++i) {
    EXPECT_NE(Subject(certs[i]).find(names[i]), std::string::npos) << Subject(certs[i]);
    // Self-signed: its own key verifies its signature (catches any corrupted byte).
    EVP_PKEY* key = X509_get0_pubkey(certs[i]);
    EXPECT_EQ(X509_verify(certs[i], key), 1) << names[i];
    EXPECT_EQ(X509_check_ca(certs[i]), 1) << names[i];
    ASN1_TIME* end = X509_getm_notAfter(certs[i]);
    std::string end_text(reinterpret_cast<const char*>(end->data),
                         static_cast<std::size_t>(end->length));
    EXPECT_EQ(end_text.substr(0, 2), "29") << end_text;  // UTCTime YYMMDD...
    X509_free(certs[i]);
  }
  // The default trust is the system bundle followed by these three.
  std::string all = DefaultEdgeRootsPem();
  EXPECT_NE(all.find(CloudflareEdgeRootsPem()), std::string::npos);
}

TEST(CfedgeCertificates, ServerCertificateChainsToTheCaWithItsNames) {
  auto ca = emulator::GenerateCa("test CA", 2);
  auto leaf =
      emulator::IssueServerCertificate(ca, {"quic.cftunnel.com", "localhost"}, {"127.0.0.1"});
  auto ca_certs = ParseAll(ca.certificate);
  auto leaf_certs = ParseAll(leaf.certificate);
  ASSERT_EQ(ca_certs.size(), 1u);
  ASSERT_EQ(leaf_certs.size(), 1u);
  X509_STORE* store = X509_STORE_new();
  X509_STORE_add_cert(store, ca_certs[0]);
  X509_STORE_CTX* ctx = X509_STORE_CTX_new();
  X509_STORE_CTX_init(ctx, store, leaf_certs[0], nullptr);
  EXPECT_EQ(X509_verify_cert(ctx), 1)
      << X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx));
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);
  EXPECT_EQ(X509_check_host(leaf_certs[0], "quic.cftunnel.com", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_host(leaf_certs[0], "localhost", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_ip_asc(leaf_certs[0], "127.0.0.1", 0), 1);
  EXPECT_NE(X509_check_host(leaf_certs[0], "other.example", 0, 0, nullptr), 1);
  // A second CA does not verify it.
  auto other = ParseAll(emulator::GenerateCa("other CA").certificate);
  X509_STORE* other_store = X509_STORE_new();
  X509_STORE_add_cert(other_store, other[0]);
  X509_STORE_CTX* other_ctx = X509_STORE_CTX_new();
  X509_STORE_CTX_init(other_ctx, other_store, leaf_certs[0], nullptr);
  EXPECT_NE(X509_verify_cert(other_ctx), 1);
  X509_STORE_CTX_free(other_ctx);
  X509_STORE_free(other_store);
  for (auto* c : ca_certs) X509_free(c);
  for (auto* c : leaf_certs) X509_free(c);
  for (auto* c : other) X509_free(c);
  EXPECT_NE(leaf.private_key.find("PRIVATE KEY"), std::string::npos);
}

}  // namespace
}  // namespace tunnelkit::cloudflare
