#include "tunnelkit/cloudflare/wire/stream/connect_stream.hpp"

#include <boost/asio/error.hpp>

namespace tunnelkit::cloudflare {

namespace asio = boost::asio;

namespace {

// Reads into `bytes` until `have` bytes are there (or the stream ends). Empty string on success.
asio::awaitable<std::string> ReadUntil(Stream& stream, std::vector<std::uint8_t>& bytes,
                                       std::size_t have, std::size_t max) {
  while (bytes.size() < have) {
    std::size_t old = bytes.size();
    // Read in chunks: more than needed is fine (it becomes leftover), but never past `max`.
    std::size_t room = std::max<std::size_t>(have - old, std::min<std::size_t>(4096, max - old));
    bytes.resize(old + room);
    auto [ec, n] = co_await stream.ReadSome(asio::buffer(bytes.data() + old, room));
    bytes.resize(old + n);
    if (ec == asio::error::eof)
      co_return "the stream ended after " + std::to_string(bytes.size()) + " bytes of its head";
    if (ec) co_return "reading the stream head failed: " + ec.message();
  }
  co_return std::string();
}

template <typename Message, typename Decode>
asio::awaitable<std::string> ReadMessage(Stream& stream, std::vector<std::uint8_t>& bytes,
                                         std::size_t offset, const MetadataLimits& limits,
                                         Decode decode, Message& message,
                                         std::vector<std::uint8_t>& leftover) {
  std::size_t max = offset + limits.max_message_bytes;
  for (;;) {
    auto body = std::span<const std::uint8_t>(bytes).subspan(offset);
    auto result = decode(body, limits);
    if (result.status == DecodeStatus::kOk) {
      message = std::move(result.message);
      leftover.assign(bytes.begin() + static_cast<std::ptrdiff_t>(offset + result.consumed),
                      bytes.end());
      co_return std::string();
    }
    if (result.status == DecodeStatus::kError) co_return result.error;
    std::size_t want = result.needed > 0 ? offset + result.needed : bytes.size() + 1;
    if (auto error = co_await ReadUntil(stream, bytes, want, max); !error.empty()) co_return error;
  }
}

asio::awaitable<boost::system::error_code> WriteAll(Stream& stream,
                                                    std::vector<std::uint8_t>&& message) {
  auto preamble = EncodeDataPreamble();
  message.insert(message.begin(), preamble.begin(), preamble.end());
  auto [ec, n] = co_await stream.Write(asio::buffer(message));
  co_return ec;
}

}  // namespace

asio::awaitable<StreamOpening> ReadStreamOpening(Stream& stream, const MetadataLimits& limits) {
  StreamOpening opening;
  std::vector<std::uint8_t> bytes;
  bytes.reserve(512);
  for (;;) {
    auto preamble = DecodePreamble(bytes);
    if (preamble.status == DecodeStatus::kError) {
      opening.error = preamble.error;
      co_return opening;
    }
    if (preamble.status == DecodeStatus::kOk) {
      opening.kind = preamble.kind;
      if (preamble.kind == StreamKind::kRpc) {
        opening.leftover.assign(bytes.begin() + kRpcPreambleSize, bytes.end());
        co_return opening;
      }
      opening.error =
          co_await ReadMessage(stream, bytes, kDataPreambleSize, limits, &DecodeConnectRequest,
                               opening.request, opening.leftover);
      co_return opening;
    }
    // Only what the preamble needs: an RPC stream's capnp bytes belong to the RPC system.
    std::size_t want = bytes.size() < kRpcPreambleSize ? kRpcPreambleSize : kDataPreambleSize;
    while (bytes.size() < want) {
      std::size_t old = bytes.size();
      bytes.resize(want);
      auto [ec, n] = co_await stream.ReadSome(asio::buffer(bytes.data() + old, want - old));
      bytes.resize(old + n);
      if (ec) {
        opening.error = ec == asio::error::eof ? "the stream ended inside its preamble"
                                               : "reading the preamble failed: " + ec.message();
        co_return opening;
      }
    }
  }
}

asio::awaitable<ResponseOpening> ReadResponseOpening(Stream& stream, const MetadataLimits& limits) {
  ResponseOpening opening;
  std::vector<std::uint8_t> bytes;
  bytes.reserve(512);
  if (auto error = co_await ReadUntil(stream, bytes, kDataPreambleSize, kDataPreambleSize);
      !error.empty()) {
    opening.error = error;
    co_return opening;
  }
  auto preamble = DecodePreamble(bytes);
  if (preamble.status != DecodeStatus::kOk || preamble.kind != StreamKind::kData) {
    opening.error = preamble.error.empty() ? "the response does not start with the data signature"
                                           : preamble.error;
    co_return opening;
  }
  opening.error = co_await ReadMessage(stream, bytes, kDataPreambleSize, limits,
                                       &DecodeConnectResponse, opening.response, opening.leftover);
  co_return opening;
}

asio::awaitable<boost::system::error_code> WriteConnectRequest(Stream& stream,
                                                               const ConnectRequest& request) {
  // A named local, not a temporary in the co_await expression (g++ 12 destroys those twice).
  auto message = EncodeConnectRequest(request);
  co_return co_await WriteAll(stream, std::move(message));
}

asio::awaitable<boost::system::error_code> WriteConnectResponse(Stream& stream,
                                                                const ConnectResponse& response) {
  auto message = EncodeConnectResponse(response);
  co_return co_await WriteAll(stream, std::move(message));
}

}  // namespace tunnelkit::cloudflare
