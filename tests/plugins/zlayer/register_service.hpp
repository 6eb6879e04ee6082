// Registering one TCP service ("svc", local port 1) over a test's own control connection, as an
// agent would: the public port the server gave it, or nullopt when the server refused, closed
// or answered something that does not decode. Heartbeats may come first and are skipped.
#pragma once

#include <cstdint>
#include <optional>
#include <variant>

#include <boost/asio/awaitable.hpp>

#include "codec/codec.hpp"
#include "codec/extension.hpp"

namespace tunnelkit::zlayer::test {

template <class ControlConnection>
boost::asio::awaitable<std::optional<std::uint16_t>> RegisterService(ControlConnection& control) {
  // Named, not a temporary inside co_await: g++ 12 mishandles those (see wait.hpp).
  const auto request = codec::Encode(codec::Register{"svc", codec::ServiceProtocol::kTcp, 1, 0});
  co_await control->Send(request.bytes);
  for (;;) {
    auto reply = co_await control->Receive();
    if (!reply) co_return std::nullopt;
    auto decoded = codec::Decode(*reply);
    if (!decoded.ok) co_return std::nullopt;
    if (std::holds_alternative<codec::Heartbeat>(decoded.message)) continue;
    if (!std::holds_alternative<codec::RegisterOk>(decoded.message)) co_return std::nullopt;
    const auto extra =
        codec::DecodeRegisterExtra(std::get<codec::RegisterOk>(decoded.message).trailer);
    if (!extra) co_return std::nullopt;
    co_return extra->public_port;
  }
}

}  // namespace tunnelkit::zlayer::test
