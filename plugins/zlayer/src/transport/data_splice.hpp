// Splices a TCP connection (public client on the server, local service on the agent) and a
// data stream, both ways, with half-close, like the core Splice. On plain ws the direction
// whose frames are unmasked moves its payload with splice(2) through a pipe, never through user
// space: server public socket -> data socket (we write the frame header, the kernel the
// payload), and agent data socket -> local socket (we parse the frame header, the kernel moves
// the payload). The masked direction (agent -> server) and wss use buffers: pooled ones while
// bytes move, a 1 KiB one while the data stream idles.
#pragma once

#include <boost/asio/awaitable.hpp>

#include "transport/data_stream.hpp"
#include "tunnelkit/stream/socket_stream.hpp"
#include "tunnelkit/stream/splice.hpp"

namespace tunnelkit::zlayer::transport {

enum class DataSide { kServer, kAgent };

struct DataSpliceResult {
  SpliceResult totals;  // a_to_b: tcp -> data stream; b_to_a: data stream -> tcp
  bool clean = false;   // both ends exchanged (then DataSocket::Finish, not a reset)
};

boost::asio::awaitable<DataSpliceResult> SpliceData(TcpStream& tcp, DataStream& data,
                                                    DataSide side);

}  // namespace tunnelkit::zlayer::transport
