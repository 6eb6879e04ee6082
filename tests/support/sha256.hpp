// A streaming SHA-256 for tests that check large bodies piece by piece (OpenSSL EVP).
#pragma once

#include <openssl/evp.h>

#include <cstddef>
#include <string>

namespace tunnelkit::test {

class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr); }
  ~Sha256() { EVP_MD_CTX_free(ctx_); }
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void Update(const void* data, std::size_t size) { EVP_DigestUpdate(ctx_, data, size); }
  // Lower-case hex of the digest; call once.
  std::string HexFinal() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx_, md, &len);
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string hex;
    for (unsigned i = 0; i < len; ++i) {
      hex += kDigits[md[i] >> 4];
      hex += kDigits[md[i] & 15];
    }
    return hex;
  }

 private:
  EVP_MD_CTX* ctx_;
};

}  // namespace tunnelkit::test
