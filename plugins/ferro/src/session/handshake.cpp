#include "session/handshake.hpp"

#include <algorithm>
#include <memory>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace tunnelkit::ferro {

namespace asio = boost::asio;

bool IsWellFormedToken(std::string_view token) {
  if (token.empty() || token.size() > FieldLimits::kToken) return false;
  return std::all_of(token.begin(), token.end(), [](char c) { return c >= 0x20 && c < 0x7F; });
}

bool TokensEqual(std::string_view presented, std::string_view configured) {
  unsigned char a[SHA256_DIGEST_LENGTH];
  unsigned char b[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(presented.data()), presented.size(), a);
  SHA256(reinterpret_cast<const unsigned char*>(configured.data()), configured.size(), b);
  return CRYPTO_memcmp(a, b, sizeof a) == 0;
}

std::optional<std::uint8_t> NegotiateVersion(std::uint8_t client_min, std::uint8_t client_max) {
  const std::uint8_t low = std::max(client_min, kProtocolVersion);
  const std::uint8_t high = std::min(client_max, kProtocolVersion);
  if (low > high) return std::nullopt;
  return high;
}

bool HasCapability(const std::vector<std::string>& capabilities, std::string_view name) {
  return std::find(capabilities.begin(), capabilities.end(), name) != capabilities.end();
}

Uuid RandomUuidV4() {
  Uuid id{};
  RAND_bytes(id.data(), static_cast<int>(id.size()));
  id[6] = static_cast<std::uint8_t>((id[6] & 0x0F) | 0x40);
  id[8] = static_cast<std::uint8_t>((id[8] & 0x3F) | 0x80);
  return id;
}

asio::awaitable<ReadFrameResult> ReadOneFrame(Stream& transport, FrameDecoder& decoder,
                                              std::chrono::milliseconds timeout) {
  ReadFrameResult result;
  auto timer = std::make_shared<asio::steady_timer>(transport.get_executor());
  auto expired = std::make_shared<bool>(false);
  auto done = std::make_shared<bool>(false);
  timer->expires_after(timeout);
  // On expiry the transport is reset, which ends the pending read with an error.
  timer->async_wait([timer, expired, done, &transport](const boost::system::error_code& ec) {
    if (ec || *done) return;
    *expired = true;
    transport.Reset();
  });
  // No more than one frame's worth per read: before authentication the limit is small, and so
  // is what an unauthenticated peer makes the server hold.
  std::vector<std::uint8_t> buffer(
      std::min<std::size_t>(16 * 1024, decoder.max_frame_size() + kFrameHeaderSize));
  for (;;) {
    Frame frame;
    const DecodeStatus status = decoder.Next(frame);
    if (status == DecodeStatus::kFrame) {
      result.frame = std::move(frame);
      break;
    }
    if (status == DecodeStatus::kError) {
      result.error = "malformed frame: " + decoder.error();
      break;
    }
    IoResult r = co_await transport.ReadSome(asio::buffer(buffer));
    if (*expired) {
      result.error = "no frame within " + std::to_string(timeout.count()) + " ms";
      break;
    }
    if (r.ec) {
      result.error = r.ec == asio::error::eof ? "connection closed by the peer"
                                              : "read failed: " + r.ec.message();
      break;
    }
    decoder.Feed(buffer.data(), r.bytes);
  }
  *done = true;
  timer->cancel();
  co_return result;
}

asio::awaitable<boost::system::error_code> WriteOneFrame(Stream& transport, const Frame& frame) {
  Bytes bytes;
  std::string error;
  if (!EncodeFrame(frame, bytes, error)) co_return asio::error::invalid_argument;
  IoResult r = co_await transport.Write(asio::buffer(bytes));
  co_return r.ec;
}

}  // namespace tunnelkit::ferro
