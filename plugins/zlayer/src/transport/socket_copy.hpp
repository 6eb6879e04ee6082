// One buffered splice direction shared by the per-connection data plane (data_splice) and the
// shared data channels (mux_splice): a TCP socket's bytes into a stream.
#pragma once

#include <boost/asio/awaitable.hpp>

#include "tunnelkit/buffer_pool.hpp"
#include "tunnelkit/stream.hpp"
#include "tunnelkit/stream/socket_stream.hpp"

namespace tunnelkit::zlayer::transport {

// Copies until the socket ends (eof, with the bytes moved) or either side fails. An idle socket
// holds no buffer: it waits for readability before taking a chunk from `buffers()` (asked each
// time, since a pool may be replaced meanwhile), and gives the chunk back after a short read
// (the socket is drained for now).
boost::asio::awaitable<IoResult> CopySocketToStream(TcpStream& from, Stream& to,
                                                    BufferPool& (*buffers)());

}  // namespace tunnelkit::zlayer::transport
