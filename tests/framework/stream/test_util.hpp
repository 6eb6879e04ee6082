// Helpers shared by the stream, origin and hello tests: run a coroutine with a time limit,
// connected TCP pairs on 127.0.0.1, and a self-signed certificate made with OpenSSL's API.
#pragma once

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <chrono>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <utility>

#include <gtest/gtest.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace tunnelkit::test {

// Runs `task` on `io` until it finishes or `limit` passes; rethrows its exception; fails the
// test on timeout.
template <class T>
T RunFor(boost::asio::io_context& io, boost::asio::awaitable<T> task,
         std::chrono::milliseconds limit = std::chrono::seconds(30)) {
  bool done = false;
  std::exception_ptr error;
  T value{};
  boost::asio::co_spawn(io, std::move(task), [&](std::exception_ptr e, T v) {
    done = true;
    error = e;
    value = std::move(v);
  });
  auto until = std::chrono::steady_clock::now() + limit;
  while (!done && std::chrono::steady_clock::now() < until) {
    io.run_one_until(until);
    if (io.stopped() && !done) io.restart();
  }
  if (!done) throw std::runtime_error("test task timed out");
  if (error) std::rethrow_exception(error);
  return value;
}

inline void RunFor(boost::asio::io_context& io, boost::asio::awaitable<void> task,
                   std::chrono::milliseconds limit = std::chrono::seconds(30)) {
  auto wrapper = [](boost::asio::awaitable<void> t) -> boost::asio::awaitable<int> {
    co_await std::move(t);
    co_return 0;
  };
  RunFor<int>(io, wrapper(std::move(task)), limit);
}

// A connected pair of TCP sockets over 127.0.0.1.
inline std::pair<boost::asio::ip::tcp::socket, boost::asio::ip::tcp::socket> TcpPair(
    boost::asio::io_context& io) {
  using boost::asio::ip::tcp;
  tcp::acceptor acceptor(io, tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
  tcp::socket client(io);
  client.connect(acceptor.local_endpoint());
  tcp::socket server = acceptor.accept();
  return {std::move(client), std::move(server)};
}

// A temporary folder removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/tunnelkit-test-XXXXXX";
    if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

struct CertFiles {
  std::string cert;  // self-signed, CA:TRUE, SAN DNS:localhost + IP:127.0.0.1
  std::string key;
};

// Writes a fresh self-signed P-256 certificate for `common_name` into `dir`.
inline CertFiles MakeSelfSignedCert(const std::filesystem::path& dir,
                                    const std::string& common_name = "localhost",
                                    const std::string& prefix = "server") {
  EVP_PKEY* pkey = EVP_EC_gen("P-256");
  if (!pkey) throw std::runtime_error("EVP_EC_gen failed");
  X509* x509 = X509_new();
  X509_set_version(x509, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x509), static_cast<long>(std::rand() % 100000 + 1));
  X509_gmtime_adj(X509_getm_notBefore(x509), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x509), 86400);
  X509_set_pubkey(x509, pkey);
  X509_NAME* name = X509_get_subject_name(x509);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1,
                             0);
  X509_set_issuer_name(x509, name);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, x509, x509, nullptr, nullptr, 0);
  std::string san = "DNS:" + common_name + ",IP:127.0.0.1";
  const std::pair<int, std::string> extensions[] = {
      {NID_subject_alt_name, san},
      {NID_basic_constraints, "critical,CA:TRUE"},
      {NID_key_usage, "critical,digitalSignature,keyCertSign"},
  };
  for (const auto& [nid, value] : extensions) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
    if (!ext) throw std::runtime_error("X509V3_EXT_conf_nid failed");
    X509_add_ext(x509, ext, -1);
    X509_EXTENSION_free(ext);
  }
  if (X509_sign(x509, pkey, EVP_sha256()) == 0) throw std::runtime_error("X509_sign failed");
  CertFiles files{(dir / (prefix + "-cert.pem")).string(), (dir / (prefix + "-key.pem")).string()};
  FILE* f = std::fopen(files.cert.c_str(), "w");
  PEM_write_X509(f, x509);
  std::fclose(f);
  f = std::fopen(files.key.c_str(), "w");
  PEM_write_PrivateKey(f, pkey, nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(f);
  X509_free(x509);
  EVP_PKEY_free(pkey);
  return files;
}

}  // namespace tunnelkit::test
