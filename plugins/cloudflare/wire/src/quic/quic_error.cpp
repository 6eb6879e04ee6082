#include "tunnelkit/cloudflare/wire/quic/quic_error.hpp"

namespace tunnelkit::cloudflare::quic {
namespace {

class Category : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "quic"; }
  std::string message(int ev) const override {
    switch (static_cast<QuicErrc>(ev)) {
      case QuicErrc::kConnectionClosed:
        return "QUIC connection closed";
      case QuicErrc::kPeerClosed:
        return "QUIC connection closed by peer";
      case QuicErrc::kIdleTimeout:
        return "QUIC idle timeout";
      case QuicErrc::kHandshakeTimeout:
        return "QUIC handshake timed out";
      case QuicErrc::kHandshakeFailed:
        return "TLS handshake failed";
      case QuicErrc::kTlsVerificationFailed:
        return "TLS verification failed";
      case QuicErrc::kTransportError:
        return "QUIC transport error";
      case QuicErrc::kStreamReset:
        return "QUIC stream reset by peer";
      case QuicErrc::kStopSending:
        return "QUIC peer stopped reading the stream";
      case QuicErrc::kStreamClosed:
        return "QUIC stream closed";
      case QuicErrc::kInvalidArgument:
        return "invalid QUIC option";
    }
    return "unknown QUIC error";
  }
};

}  // namespace

const boost::system::error_category& QuicCategory() {
  static const Category category;
  return category;
}

boost::system::error_code make_error_code(QuicErrc e) {
  return {static_cast<int>(e), QuicCategory()};
}

}  // namespace tunnelkit::cloudflare::quic
