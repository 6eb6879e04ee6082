// tunnelkit::Stream over one shared data WebSocket (after DataAttach), as a plain byte channel
// for the core multiplexer: writes go out as binary messages (at most kMaxDataMessage bytes
// each), reads hand out message bytes as they come; message boundaries mean nothing. Beast
// allows one read and one write at a time, which is exactly what MuxSession does (one reader,
// one writer coroutine).
#pragma once

#include <memory>
#include <string>

#include "transport/data_socket_stream.hpp"
#include "tunnelkit/mux/config.hpp"
#include "tunnelkit/stream.hpp"

namespace tunnelkit::zlayer::transport {

// Multiplexer settings of a shared data WebSocket. The agent opens every stream (odd ids), the
// server accepts them. `max_streams`: public connections one socket carries at most (the agent
// opens another socket beyond it). The buffer pool keeps few idle chunks: with a thousand held
// connections what matters is what an idle one costs, not the next burst's allocation.
mux::MuxConfig SharedChannelConfig(mux::IdParity ids, std::size_t max_streams, std::string label);

class DataChannel final : public DataSocketStream {
 public:
  DataChannel(std::shared_ptr<DataSocket> socket, std::string description);
  ~DataChannel() override;

  // eof once the peer closed the WebSocket (or the connection under it) cleanly.
  boost::asio::awaitable<IoResult> ReadSome(boost::asio::mutable_buffer buffer) override;
  boost::asio::awaitable<IoResult> Write(boost::asio::const_buffer buffer) override;
  // The graceful end of the socket (TLS close_notify / TCP FIN): no more writes.
  boost::asio::awaitable<boost::system::error_code> ShutdownWrite() override;
  void Reset() override;
};

}  // namespace tunnelkit::zlayer::transport
