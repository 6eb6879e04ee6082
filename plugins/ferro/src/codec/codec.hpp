// FerroTunnel 1.x wire codec (specs/ferrotunnel.md 2.2-2.6): outer framing (u32 BE length,
// type byte), the raw data frame, and bincode-2 "standard" control frames. Pure functions over
// bytes; every length and count is bounded, and every rejection says why.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "codec/frame.hpp"

namespace tunnelkit::ferro {

inline constexpr std::uint32_t kDefaultMaxFrameSize = 16u * 1024u * 1024u;
inline constexpr std::size_t kFrameHeaderSize = 5;         // length + type
inline constexpr std::size_t kDataFrameHeaderSize = 10;    // length + type + stream id + flags
inline constexpr std::size_t kMaxDataChunk = 64u * 1024u;  // writers split payloads at this
inline constexpr std::uint8_t kFrameTypeControl = 0x00;
inline constexpr std::uint8_t kFrameTypeData = 0x01;
inline constexpr std::uint8_t kDataFlagEndOfStream = 0x01;

// Field limits of the newer FerroTunnel validators; a decoded frame beyond them is rejected,
// and the encoder refuses to produce one.
struct FieldLimits {
  static constexpr std::size_t kToken = 256;
  static constexpr std::size_t kTunnelId = 256;
  static constexpr std::size_t kCapabilities = 32;
  static constexpr std::size_t kCapability = 64;
  static constexpr std::size_t kServiceName = 256;
  static constexpr std::size_t kMetadataEntries = 64;
  static constexpr std::size_t kMetadataKey = 256;
  static constexpr std::size_t kMetadataValue = 1024;
  static constexpr std::size_t kPublicUrl = 2048;
  static constexpr std::size_t kHeaders = 128;
  static constexpr std::size_t kHeaderField = 8192;
  static constexpr std::size_t kErrorMessage = 4096;
  static constexpr std::size_t kCloseMessage = 4096;
  static constexpr std::size_t kPluginId = 256;
};

// Checks the field limits above; returns an empty string when the frame is acceptable.
std::string CheckFieldLimits(const Frame& frame);

// Appends one whole frame (header included) to `out`. Data goes out as a type-0x01 frame.
// Returns false (and leaves `out` as it was) when the frame breaks a limit; `error` says which.
bool EncodeFrame(const Frame& frame, Bytes& out, std::string& error,
                 std::uint32_t max_frame_size = kDefaultMaxFrameSize);

// The 10-byte header of a data frame carrying `payload_size` bytes, for scatter writes that
// keep the payload where it is. The caller keeps payload_size + 6 within the frame limit.
std::array<std::uint8_t, kDataFrameHeaderSize> EncodeDataHeader(std::uint32_t stream_id,
                                                                std::size_t payload_size,
                                                                bool end_of_stream = false);

enum class DecodeStatus {
  kFrame,     // one frame decoded; `consumed` bytes used
  kNeedMore,  // the input holds no whole frame yet (nothing wrong so far)
  kError,     // the input is malformed; the connection must be closed
};

struct DecodeResult {
  DecodeStatus status = DecodeStatus::kNeedMore;
  std::size_t consumed = 0;
  std::string error;  // set for kError
};

// Decodes the first frame of `data`. Header problems (zero or oversize length, unknown type,
// short data frame) are reported as soon as the header bytes are present.
DecodeResult DecodeFrame(const std::uint8_t* data, std::size_t size, Frame& out,
                         std::uint32_t max_frame_size = kDefaultMaxFrameSize);

// Decodes a bincode control payload (what follows the type byte). Trailing bytes are an error.
bool DecodeControlPayload(const std::uint8_t* data, std::size_t size, Frame& out,
                          std::string& error);

// Incremental decoding of a byte stream: feed what the socket delivered, then take frames
// until kNeedMore. After kError the decoder stays failed.
// The header of a data frame at the front of a decoder's input, once its 10 bytes are in.
struct DataFrameStart {
  std::uint32_t stream_id = 0;
  std::size_t payload_size = 0;      // the whole payload
  std::size_t payload_buffered = 0;  // how much of it the decoder holds already
  const std::uint8_t* payload = nullptr;
};

class FrameDecoder {
 public:
  explicit FrameDecoder(std::uint32_t max_frame_size = kDefaultMaxFrameSize)
      : max_frame_size_(max_frame_size) {}

  void Feed(const std::uint8_t* data, std::size_t size);
  // Room for up to `size` more input bytes, to read into directly (no copy through another
  // buffer); Commit says how many were written.
  std::span<std::uint8_t> Prepare(std::size_t size);
  void Commit(std::size_t size);
  DecodeStatus Next(Frame& out);
  const std::string& error() const { return error_; }
  std::size_t buffered() const { return buffer_.size() - start_; }
  // A server starts with a small limit before the peer has authenticated, then raises it.
  std::uint32_t max_frame_size() const { return max_frame_size_; }
  void set_max_frame_size(std::uint32_t size) { max_frame_size_ = size; }

  // The data frame the input starts with, if its header is complete and valid (otherwise
  // Next reports what is wrong). Lets a reader move the rest of a large payload itself.
  std::optional<DataFrameStart> PeekDataFrame() const;
  // Drops the first `size` input bytes (at most buffered()): the header and buffered payload
  // of a frame whose remaining bytes the caller takes from the transport directly.
  void Discard(std::size_t size);

 private:
  std::uint32_t max_frame_size_;
  Bytes buffer_;  // not zeroed when grown (UninitializedAllocator)
  std::size_t start_ = 0;
  std::size_t prepared_ = 0;
  std::string error_;
};

}  // namespace tunnelkit::ferro
