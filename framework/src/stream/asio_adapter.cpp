#include "tunnelkit/stream/asio_adapter.hpp"

namespace tunnelkit {

// Synchronous teardown cannot be expressed over an asynchronous Stream: reset instead.
void teardown(boost::beast::role_type, StreamRef& stream, boost::system::error_code& ec) {
  stream.stream().Reset();
  ec = {};
}

}  // namespace tunnelkit
