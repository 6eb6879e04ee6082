// ConnectRequest / ConnectResponse (specs/cloudflare.md 5.2): the Cap'n Proto message that
// follows the data-stream preamble, in standard unpacked stream framing. Pure: bytes in,
// messages out, with limits on the message size, the number of metadata entries and every
// string.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tunnelkit/cloudflare/wire/codec/stream_preamble.hpp"

namespace tunnelkit::cloudflare {

enum class ConnectionType : std::uint16_t { kHttp = 0, kWebsocket = 1, kTcp = 2 };

struct MetadataEntry {
  std::string key;
  std::string val;
  bool operator==(const MetadataEntry&) const = default;
};

struct ConnectRequest {
  std::string dest;
  ConnectionType type = ConnectionType::kHttp;
  std::vector<MetadataEntry> metadata;
  bool operator==(const ConnectRequest&) const = default;
};

struct ConnectResponse {
  std::string error;
  std::vector<MetadataEntry> metadata;
  bool operator==(const ConnectResponse&) const = default;
};

struct MetadataLimits {
  std::size_t max_message_bytes = 256 * 1024;  // whole framed message
  std::size_t max_segments = 16;
  std::size_t max_entries = 512;  // metadata entries (one per header value)
  std::size_t max_dest_bytes = 16 * 1024;
  std::size_t max_key_bytes = 1024;
  std::size_t max_value_bytes = 64 * 1024;
};

template <typename Message>
struct MessageResult {
  DecodeStatus status = DecodeStatus::kNeedMore;
  Message message;
  std::size_t consumed = 0;  // framed message bytes when kOk
  std::size_t needed = 0;    // when kNeedMore: total bytes needed, if known (0 = unknown yet)
  std::string error;         // when kError
};

// Decodes one framed message from the front of `bytes` (bytes after it are left alone).
MessageResult<ConnectRequest> DecodeConnectRequest(std::span<const std::uint8_t> bytes,
                                                   const MetadataLimits& limits = {});
MessageResult<ConnectResponse> DecodeConnectResponse(std::span<const std::uint8_t> bytes,
                                                     const MetadataLimits& limits = {});

// Framed message bytes (without the preamble).
std::vector<std::uint8_t> EncodeConnectRequest(const ConnectRequest& request);
std::vector<std::uint8_t> EncodeConnectResponse(const ConnectResponse& response);

// Size of the framed message at the front of `bytes`: kNeedMore while the segment table is
// incomplete, kError when it breaks a limit. Shared by both decoders.
struct FrameSize {
  DecodeStatus status = DecodeStatus::kNeedMore;
  std::size_t header_bytes = 0;
  std::size_t total_bytes = 0;
  std::string error;
};
FrameSize MeasureFrame(std::span<const std::uint8_t> bytes, const MetadataLimits& limits);

// Metadata helpers: the first value of `key`, or nullptr.
const std::string* FindMetadata(const std::vector<MetadataEntry>& metadata, std::string_view key);

}  // namespace tunnelkit::cloudflare
