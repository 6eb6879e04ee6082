// Splices a TCP connection (public client on the server, local service on the agent) and a
// stream of a shared data WebSocket, both ways, with half-close, like the core Splice. What it
// does differently is what an idle connection holds: nothing but its coroutines. The TCP side
// waits for readability before taking a pooled buffer; the stream side waits for one byte in its
// coroutine frame, then takes a pooled buffer for it and everything else the multiplexer has
// already received. (The core Splice keeps a 2 KiB read buffer per idle stream direction: with
// a thousand held connections, 2 MB per process.)
#pragma once

#include <boost/asio/awaitable.hpp>

#include "tunnelkit/mux/session.hpp"
#include "tunnelkit/stream/socket_stream.hpp"
#include "tunnelkit/stream/splice.hpp"

namespace tunnelkit::zlayer::transport {

// a_to_b: tcp -> stream; b_to_a: stream -> tcp. On an error both are reset.
boost::asio::awaitable<SpliceResult> SpliceMux(TcpStream& tcp, mux::MuxStream& stream);

}  // namespace tunnelkit::zlayer::transport
