// Sending one control-channel message (Auth, Register, Heartbeat, Disconnect...) on a WebSocket.
#pragma once

#include <memory>

#include "codec/messages.hpp"
#include "transport/ws_connection.hpp"

namespace tunnelkit::zlayer::transport {

// Control messages are small: queued without waiting for the send queue (and without a
// co_await, so no temporary message lives across a suspension point: g++ 12 mishandles those).
// False when the message cannot be encoded (logged) or the connection is closed.
bool SendControl(const std::shared_ptr<WsConnection>& conn, const codec::Message& message);

}  // namespace tunnelkit::zlayer::transport
