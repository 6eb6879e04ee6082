// The edge's side of one RPC stream (an edge-opened stream carrying Cap'n Proto with the
// client's CloudflaredServer as bootstrap): both calls, which the client refuses.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include <capnp/rpc-twoparty.h>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>

#include "cloudflare/tunnelrpc.capnp.h"
#include "tunnelkit/cloudflare/wire/kjasio/asio_kj_loop.hpp"
#include "tunnelkit/cloudflare/wire/kjasio/stream_kj_adapter.hpp"
#include "tunnelkit/cloudflare/wire/quic/quic_connection.hpp"
#include "tunnelkit/cloudflare/wire/quic/quic_stream.hpp"
#include "tunnelkit/cloudflare/wire/rpc/cloudflared_server.hpp"
#include "tunnelkit/cloudflare/wire/stream/connect_stream.hpp"

namespace tunnelkit::cloudflare::quic::test {

inline boost::asio::awaitable<void> CallCloudflaredServer(QuicConnection& edge, AsioKjLoop& kj) {
  auto stream = co_await edge.OpenStream();
  co_await stream->Write(boost::asio::buffer(kRpcStreamSignature));
  // The edge is the RPC client on these streams; the client's bootstrap is CloudflaredServer.
  StreamKjAdapter adapter(stream);
  capnp::TwoPartyClient rpc_client(adapter);
  auto server = rpc_client.bootstrap().castAs<rpc::CloudflaredServer>();
  auto udp = server.registerUdpSessionRequest();
  udp.setDstPort(53);
  kj::Promise<std::string> udp_reply = udp.send().then(
      [](auto&& response) { return std::string(response.getResult().getErr().cStr()); });
  std::string udp_error = co_await AwaitKj(kj, std::move(udp_reply));
  EXPECT_EQ(udp_error, kUdpRefusal);
  auto config = server.updateConfigurationRequest();
  config.setVersion(3);
  kj::Promise<std::string> config_reply = config.send().then([](auto&& response) {
    return std::to_string(response.getResult().getLatestAppliedVersion()) + " " +
           response.getResult().getErr().cStr();
  });
  std::string config_result = co_await AwaitKj(kj, std::move(config_reply));
  EXPECT_EQ(config_result, std::string("-1 ") + kConfigRefusal);
}

}  // namespace tunnelkit::cloudflare::quic::test
