// Error codes of the QUIC layer, and the exception thrown when a connection cannot be set up.
#pragma once

#include <stdexcept>
#include <string>
#include <system_error>

#include <boost/system/error_code.hpp>

namespace tunnelkit::cloudflare::quic {

enum class QuicErrc {
  kConnectionClosed = 1,   // closed locally (Close() or destruction)
  kPeerClosed,             // the peer sent CONNECTION_CLOSE
  kIdleTimeout,            // no packet from the peer within the idle timeout
  kHandshakeTimeout,       // the handshake did not finish in time
  kHandshakeFailed,        // TLS handshake failed (alert sent or received, ALPN mismatch)
  kTlsVerificationFailed,  // the peer's certificate did not verify
  kTransportError,         // protocol violation detected locally or reported by ngtcp2
  kStreamReset,            // the peer reset the stream (RESET_STREAM)
  kStopSending,            // the peer does not want more data on the stream (STOP_SENDING)
  kStreamClosed,           // the stream is closed (locally reset, or write after FIN)
  kInvalidArgument,        // bad option value
};

const boost::system::error_category& QuicCategory();
boost::system::error_code make_error_code(QuicErrc e);

// Thrown by QuicClient::Connect and the QuicServer constructor. what() is one line meant for
// people, e.g. "TLS verification failed: The certificate is NOT trusted. ...".
class QuicError : public std::runtime_error {
 public:
  QuicError(boost::system::error_code ec, const std::string& message)
      : std::runtime_error(message), code_(ec) {}
  boost::system::error_code code() const { return code_; }

 private:
  boost::system::error_code code_;
};

}  // namespace tunnelkit::cloudflare::quic

namespace boost::system {
template <>
struct is_error_code_enum<tunnelkit::cloudflare::quic::QuicErrc> : std::true_type {};
}  // namespace boost::system
