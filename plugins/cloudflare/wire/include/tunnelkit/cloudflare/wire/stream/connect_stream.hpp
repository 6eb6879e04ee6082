// Reading and writing the head of a data stream (specs/cloudflare.md 5.1-5.2): the 8-byte
// preamble, then one ConnectRequest (edge -> client) or ConnectResponse (client -> edge). Bytes
// read past the message are returned as `leftover`: they are the start of the body (wrap the
// stream in a PrefixedStream to read on).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/system/error_code.hpp>

#include "tunnelkit/cloudflare/wire/codec/connect_metadata.hpp"
#include "tunnelkit/stream.hpp"

namespace tunnelkit::cloudflare {

struct StreamOpening {
  std::string error;  // set when the stream broke or the bytes were malformed (one line)
  StreamKind kind = StreamKind::kData;
  ConnectRequest request;  // kData only
  std::vector<std::uint8_t> leftover;
};

struct ResponseOpening {
  std::string error;
  ConnectResponse response;
  std::vector<std::uint8_t> leftover;
};

// Reads the preamble of an edge-opened stream and, for data streams, the ConnectRequest. For an
// RPC stream it stops after the 6 signature bytes (leftover = what followed).
boost::asio::awaitable<StreamOpening> ReadStreamOpening(Stream& stream,
                                                        const MetadataLimits& limits);
// Reads the data preamble and the ConnectResponse the client sends back.
boost::asio::awaitable<ResponseOpening> ReadResponseOpening(Stream& stream,
                                                            const MetadataLimits& limits);

// Preamble + message in one write.
boost::asio::awaitable<boost::system::error_code> WriteConnectRequest(
    Stream& stream, const ConnectRequest& request);
boost::asio::awaitable<boost::system::error_code> WriteConnectResponse(
    Stream& stream, const ConnectResponse& response);

}  // namespace tunnelkit::cloudflare
