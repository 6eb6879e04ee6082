#include "codec/codec.hpp"

#include <cstring>
#include <type_traits>

#include "codec/bincode.hpp"
#include "tunnelkit/hex.hpp"
#include "tunnelkit/uuid_text.hpp"

namespace tunnelkit::ferro {

namespace {

using Limits = FieldLimits;

std::string TooLong(const char* field, std::size_t size, std::size_t max) {
  return std::string(field) + ": " + std::to_string(size) + " exceeds the limit " +
         std::to_string(max);
}

std::string CheckString(const char* field, const std::string& text, std::size_t max) {
  if (text.size() > max) return TooLong(field, text.size(), max);
  if (!bincode::IsValidUtf8(text)) return std::string(field) + ": invalid UTF-8";
  return {};
}

std::string CheckPairs(const char* field, const std::vector<StringPair>& pairs,
                       std::size_t max_count, std::size_t max_key, std::size_t max_value) {
  if (pairs.size() > max_count) return TooLong(field, pairs.size(), max_count);
  for (const auto& [key, value] : pairs) {
    if (auto e = CheckString(field, key, max_key); !e.empty()) return e;
    if (auto e = CheckString(field, value, max_value); !e.empty()) return e;
  }
  return {};
}

void StoreBigEndian32(std::uint8_t* p, std::uint32_t v) {
  p[0] = static_cast<std::uint8_t>(v >> 24);
  p[1] = static_cast<std::uint8_t>(v >> 16);
  p[2] = static_cast<std::uint8_t>(v >> 8);
  p[3] = static_cast<std::uint8_t>(v);
}

std::uint32_t LoadBigEndian32(const std::uint8_t* p) {
  return (static_cast<std::uint32_t>(p[0]) << 24) | (static_cast<std::uint32_t>(p[1]) << 16) |
         (static_cast<std::uint32_t>(p[2]) << 8) | static_cast<std::uint32_t>(p[3]);
}

void WritePairs(bincode::Writer& w, const std::vector<StringPair>& pairs) {
  w.Varint(pairs.size());
  for (const auto& [key, value] : pairs) {
    w.Str(key);
    w.Str(value);
  }
}

void WriteStrings(bincode::Writer& w, const std::vector<std::string>& items) {
  w.Varint(items.size());
  for (const auto& item : items) w.Str(item);
}

void WriteBody(bincode::Writer& w, const Frame& frame) {
  w.Varint(frame.index());
  std::visit(
      [&w](const auto& f) {
        using T = std::decay_t<decltype(f)>;
        if constexpr (std::is_same_v<T, Handshake>) {
          w.Str(f.token);
          w.OptionTag(f.tunnel_id.has_value());
          if (f.tunnel_id) w.Str(*f.tunnel_id);
          w.U8(f.min_version);
          w.U8(f.max_version);
          WriteStrings(w, f.capabilities);
        } else if constexpr (std::is_same_v<T, HandshakeAck>) {
          w.Blob(f.session_id.data(), f.session_id.size());
          w.Varint(static_cast<std::uint32_t>(f.status));
          w.U8(f.version);
          WriteStrings(w, f.server_capabilities);
        } else if constexpr (std::is_same_v<T, Register>) {
          w.Str(f.service_name);
          w.Varint(static_cast<std::uint32_t>(f.protocol));
          WritePairs(w, f.metadata);
        } else if constexpr (std::is_same_v<T, RegisterAck>) {
          w.Str(f.public_url);
          w.Varint(static_cast<std::uint32_t>(f.status));
        } else if constexpr (std::is_same_v<T, OpenStream>) {
          w.Varint(f.stream_id);
          w.Varint(static_cast<std::uint32_t>(f.protocol));
          WritePairs(w, f.headers);
          w.OptionTag(f.body_hint.has_value());
          if (f.body_hint) w.Varint(*f.body_hint);
          w.Varint(static_cast<std::uint32_t>(f.priority));
        } else if constexpr (std::is_same_v<T, StreamAck>) {
          w.Varint(f.stream_id);
          w.Varint(static_cast<std::uint32_t>(f.status));
        } else if constexpr (std::is_same_v<T, Data>) {
          w.Varint(f.stream_id);
          w.Blob(f.data.data(), f.data.size());
          w.Bool(f.end_of_stream);
        } else if constexpr (std::is_same_v<T, CloseStream>) {
          w.Varint(f.stream_id);
          w.Varint(static_cast<std::uint32_t>(f.reason.kind));
          if (f.reason.kind == CloseReason::Kind::kError) w.Str(f.reason.message);
        } else if constexpr (std::is_same_v<T, Heartbeat> || std::is_same_v<T, HeartbeatAck>) {
          w.Varint(f.timestamp);
        } else if constexpr (std::is_same_v<T, Error>) {
          w.OptionTag(f.stream_id.has_value());
          if (f.stream_id) w.Varint(*f.stream_id);
          w.Varint(static_cast<std::uint32_t>(f.code));
          w.Str(f.message);
        } else if constexpr (std::is_same_v<T, PluginData>) {
          w.Str(f.plugin_id);
          w.Blob(f.data.data(), f.data.size());
        } else if constexpr (std::is_same_v<T, WindowUpdate>) {
          w.Varint(f.stream_id);
          w.Varint(f.increment);
        }
      },
      frame);
}

std::vector<std::string> ReadStrings(bincode::Reader& r, const char* field, std::size_t max_count,
                                     std::size_t max_each) {
  const std::size_t n = r.Length(field, max_count);
  std::vector<std::string> items;
  items.reserve(n);
  for (std::size_t i = 0; i < n; ++i) items.push_back(r.Str(field, max_each));
  return items;
}

std::vector<StringPair> ReadPairs(bincode::Reader& r, const char* field, std::size_t max_count,
                                  std::size_t max_key, std::size_t max_value) {
  const std::size_t n = r.Length(field, max_count, 2);
  std::vector<StringPair> pairs;
  pairs.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    std::string key = r.Str(field, max_key);
    std::string value = r.Str(field, max_value);
    pairs.emplace_back(std::move(key), std::move(value));
  }
  return pairs;
}

template <typename Enum>
Enum ReadEnum(bincode::Reader& r, const char* field, std::uint32_t count) {
  return static_cast<Enum>(r.Variant(field, count));
}

// long-function: one case per wire variant (13, in FerroTunnel's order), each a few field
// reads; the switch is the frame table, read top to bottom against the spec.
Frame ReadBody(bincode::Reader& r) {
  const std::uint32_t tag = r.Variant("Frame tag", std::variant_size_v<Frame>);
  switch (tag) {
    case 0: {
      Handshake f;
      f.token = r.Str("Handshake.token", Limits::kToken);
      if (r.OptionTag("Handshake.tunnel_id")) {
        f.tunnel_id = r.Str("Handshake.tunnel_id", Limits::kTunnelId);
      }
      f.min_version = r.U8("Handshake.min_version");
      f.max_version = r.U8("Handshake.max_version");
      f.capabilities =
          ReadStrings(r, "Handshake.capabilities", Limits::kCapabilities, Limits::kCapability);
      return f;
    }
    case 1: {
      HandshakeAck f;
      // uuid's serde form is a byte slice: varint length (must be 16) + the bytes.
      const std::uint64_t n = r.VarintU64("HandshakeAck.session_id");
      if (n != f.session_id.size()) {
        throw bincode::DecodeFailure("HandshakeAck.session_id: a UUID needs 16 bytes, got " +
                                     std::to_string(n));
      }
      std::memcpy(f.session_id.data(), r.Take(f.session_id.size(), "HandshakeAck.session_id"),
                  f.session_id.size());
      f.status = ReadEnum<HandshakeStatus>(r, "HandshakeAck.status", kHandshakeStatusCount);
      f.version = r.U8("HandshakeAck.version");
      f.server_capabilities = ReadStrings(r, "HandshakeAck.server_capabilities",
                                          Limits::kCapabilities, Limits::kCapability);
      return f;
    }
    case 2: {
      Register f;
      f.service_name = r.Str("Register.service_name", Limits::kServiceName);
      f.protocol = ReadEnum<Protocol>(r, "Register.protocol", kProtocolCount);
      f.metadata = ReadPairs(r, "Register.metadata", Limits::kMetadataEntries, Limits::kMetadataKey,
                             Limits::kMetadataValue);
      return f;
    }
    case 3: {
      RegisterAck f;
      f.public_url = r.Str("RegisterAck.public_url", Limits::kPublicUrl);
      f.status = ReadEnum<RegisterStatus>(r, "RegisterAck.status", kRegisterStatusCount);
      return f;
    }
    case 4: {
      OpenStream f;
      f.stream_id = r.VarintU32("OpenStream.stream_id");
      f.protocol = ReadEnum<Protocol>(r, "OpenStream.protocol", kProtocolCount);
      f.headers = ReadPairs(r, "OpenStream.headers", Limits::kHeaders, Limits::kHeaderField,
                            Limits::kHeaderField);
      if (r.OptionTag("OpenStream.body_hint")) f.body_hint = r.VarintU64("OpenStream.body_hint");
      f.priority = ReadEnum<StreamPriority>(r, "OpenStream.priority", kStreamPriorityCount);
      return f;
    }
    case 5: {
      StreamAck f;
      f.stream_id = r.VarintU32("StreamAck.stream_id");
      f.status = ReadEnum<StreamStatus>(r, "StreamAck.status", kStreamStatusCount);
      return f;
    }
    case 6: {
      Data f;
      f.stream_id = r.VarintU32("Data.stream_id");
      f.data = r.Blob("Data.data", kDefaultMaxFrameSize);
      f.end_of_stream = r.Bool("Data.end_of_stream");
      return f;
    }
    case 7: {
      CloseStream f;
      f.stream_id = r.VarintU32("CloseStream.stream_id");
      f.reason.kind = ReadEnum<CloseReason::Kind>(r, "CloseStream.reason", kCloseReasonCount);
      if (f.reason.kind == CloseReason::Kind::kError) {
        f.reason.message = r.Str("CloseStream.reason.Error", Limits::kCloseMessage);
      }
      return f;
    }
    case 8:
      return Heartbeat{r.VarintU64("Heartbeat.timestamp")};
    case 9:
      return HeartbeatAck{r.VarintU64("HeartbeatAck.timestamp")};
    case 10: {
      Error f;
      if (r.OptionTag("Error.stream_id")) f.stream_id = r.VarintU32("Error.stream_id");
      f.code = ReadEnum<ErrorCode>(r, "Error.code", kErrorCodeCount);
      f.message = r.Str("Error.message", Limits::kErrorMessage);
      return f;
    }
    case 11: {
      PluginData f;
      f.plugin_id = r.Str("PluginData.plugin_id", Limits::kPluginId);
      f.data = r.Blob("PluginData.data", kDefaultMaxFrameSize);
      return f;
    }
    default: {
      WindowUpdate f;
      f.stream_id = r.VarintU32("WindowUpdate.stream_id");
      f.increment = r.VarintU32("WindowUpdate.increment");
      return f;
    }
  }
}

}  // namespace

std::string CheckFieldLimits(const Frame& frame) {
  return std::visit(
      [](const auto& f) -> std::string {
        using T = std::decay_t<decltype(f)>;
        if constexpr (std::is_same_v<T, Handshake>) {
          if (auto e = CheckString("Handshake.token", f.token, Limits::kToken); !e.empty()) {
            return e;
          }
          if (f.tunnel_id) {
            if (auto e = CheckString("Handshake.tunnel_id", *f.tunnel_id, Limits::kTunnelId);
                !e.empty()) {
              return e;
            }
          }
          if (f.capabilities.size() > Limits::kCapabilities) {
            return TooLong("Handshake.capabilities", f.capabilities.size(), Limits::kCapabilities);
          }
          for (const auto& c : f.capabilities) {
            if (auto e = CheckString("Handshake.capabilities", c, Limits::kCapability);
                !e.empty()) {
              return e;
            }
          }
        } else if constexpr (std::is_same_v<T, HandshakeAck>) {
          if (f.server_capabilities.size() > Limits::kCapabilities) {
            return TooLong("HandshakeAck.server_capabilities", f.server_capabilities.size(),
                           Limits::kCapabilities);
          }
          for (const auto& c : f.server_capabilities) {
            if (auto e = CheckString("HandshakeAck.server_capabilities", c, Limits::kCapability);
                !e.empty()) {
              return e;
            }
          }
        } else if constexpr (std::is_same_v<T, Register>) {
          if (auto e = CheckString("Register.service_name", f.service_name, Limits::kServiceName);
              !e.empty()) {
            return e;
          }
          return CheckPairs("Register.metadata", f.metadata, Limits::kMetadataEntries,
                            Limits::kMetadataKey, Limits::kMetadataValue);
        } else if constexpr (std::is_same_v<T, RegisterAck>) {
          return CheckString("RegisterAck.public_url", f.public_url, Limits::kPublicUrl);
        } else if constexpr (std::is_same_v<T, OpenStream>) {
          return CheckPairs("OpenStream.headers", f.headers, Limits::kHeaders, Limits::kHeaderField,
                            Limits::kHeaderField);
        } else if constexpr (std::is_same_v<T, CloseStream>) {
          if (f.reason.kind == CloseReason::Kind::kError) {
            return CheckString("CloseStream.reason.Error", f.reason.message, Limits::kCloseMessage);
          }
        } else if constexpr (std::is_same_v<T, Error>) {
          return CheckString("Error.message", f.message, Limits::kErrorMessage);
        } else if constexpr (std::is_same_v<T, PluginData>) {
          return CheckString("PluginData.plugin_id", f.plugin_id, Limits::kPluginId);
        }
        return {};
      },
      frame);
}

std::array<std::uint8_t, kDataFrameHeaderSize> EncodeDataHeader(std::uint32_t stream_id,
                                                                std::size_t payload_size,
                                                                bool end_of_stream) {
  std::array<std::uint8_t, kDataFrameHeaderSize> header{};
  StoreBigEndian32(header.data(), static_cast<std::uint32_t>(payload_size + 6));
  header[4] = kFrameTypeData;
  StoreBigEndian32(header.data() + 5, stream_id);
  header[9] = end_of_stream ? kDataFlagEndOfStream : 0;
  return header;
}

bool EncodeFrame(const Frame& frame, Bytes& out, std::string& error, std::uint32_t max_frame_size) {
  if (const auto* data = std::get_if<Data>(&frame)) {
    if (data->data.size() + 6 > max_frame_size) {
      error = "Data: payload of " + std::to_string(data->data.size()) +
              " bytes exceeds the frame limit " + std::to_string(max_frame_size);
      return false;
    }
    const auto header = EncodeDataHeader(data->stream_id, data->data.size(), data->end_of_stream);
    out.insert(out.end(), header.begin(), header.end());
    out.insert(out.end(), data->data.begin(), data->data.end());
    return true;
  }
  if (std::string e = CheckFieldLimits(frame); !e.empty()) {
    error = std::move(e);
    return false;
  }
  const std::size_t start = out.size();
  out.resize(start + kFrameHeaderSize);
  bincode::Writer writer(out);
  WriteBody(writer, frame);
  const std::size_t length = out.size() - start - 4;
  if (length > max_frame_size) {
    out.resize(start);
    error = std::string(FrameName(frame)) + ": encoded size " + std::to_string(length) +
            " exceeds the frame limit " + std::to_string(max_frame_size);
    return false;
  }
  StoreBigEndian32(out.data() + start, static_cast<std::uint32_t>(length));
  out[start + 4] = kFrameTypeControl;
  return true;
}

bool DecodeControlPayload(const std::uint8_t* data, std::size_t size, Frame& out,
                          std::string& error) {
  try {
    bincode::Reader reader(data, size);
    Frame frame = ReadBody(reader);
    if (reader.remaining() != 0) {
      error = std::string(FrameName(frame)) + ": " + std::to_string(reader.remaining()) +
              " trailing bytes after the frame";
      return false;
    }
    if (std::string e = CheckFieldLimits(frame); !e.empty()) {
      error = std::move(e);
      return false;
    }
    out = std::move(frame);
    return true;
  } catch (const bincode::DecodeFailure& failure) {
    error = failure.what();
    return false;
  }
}

DecodeResult DecodeFrame(const std::uint8_t* data, std::size_t size, Frame& out,
                         std::uint32_t max_frame_size) {
  DecodeResult result;
  if (size < 4) return result;
  const std::uint32_t length = LoadBigEndian32(data);
  if (length == 0) {
    result.status = DecodeStatus::kError;
    result.error = "frame length 0 (a frame holds at least its type byte)";
    return result;
  }
  if (length > max_frame_size) {
    result.status = DecodeStatus::kError;
    result.error = "frame length " + std::to_string(length) + " exceeds the limit " +
                   std::to_string(max_frame_size);
    return result;
  }
  if (size < kFrameHeaderSize) return result;
  const std::uint8_t type = data[4];
  if (type != kFrameTypeControl && type != kFrameTypeData) {
    result.status = DecodeStatus::kError;
    result.error = "unknown frame type " + std::to_string(type);
    return result;
  }
  if (type == kFrameTypeData && length < 6) {
    result.status = DecodeStatus::kError;
    result.error = "data frame length " + std::to_string(length) +
                   " is shorter than its 6-byte header (type, stream id, flags)";
    return result;
  }
  if (size - 4 < length) return result;
  const std::uint8_t* payload = data + kFrameHeaderSize;
  const std::size_t payload_size = length - 1;
  if (type == kFrameTypeData) {
    Data frame;
    frame.stream_id = LoadBigEndian32(payload);
    frame.end_of_stream = (payload[4] & kDataFlagEndOfStream) != 0;
    frame.data.assign(payload + 5, payload + payload_size);
    out = std::move(frame);
  } else if (!DecodeControlPayload(payload, payload_size, out, result.error)) {
    result.status = DecodeStatus::kError;
    return result;
  }
  result.status = DecodeStatus::kFrame;
  result.consumed = 4 + static_cast<std::size_t>(length);
  return result;
}

void FrameDecoder::Feed(const std::uint8_t* data, std::size_t size) {
  if (!error_.empty() || size == 0) return;
  std::memcpy(Prepare(size).data(), data, size);
  Commit(size);
}

std::span<std::uint8_t> FrameDecoder::Prepare(std::size_t size) {
  // Compact before growing so the buffer stays about one frame large.
  if (start_ > 0 && (start_ == buffer_.size() || start_ >= buffer_.size() / 2)) {
    buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(start_));
    start_ = 0;
  }
  const std::size_t used = buffer_.size();
  buffer_.resize(used + size);  // not zeroed (UninitializedAllocator)
  prepared_ = used;
  return {buffer_.data() + used, size};
}

void FrameDecoder::Commit(std::size_t size) {
  buffer_.resize(prepared_ + std::min(size, buffer_.size() - prepared_));
  if (!error_.empty()) buffer_.resize(prepared_);
}

std::optional<DataFrameStart> FrameDecoder::PeekDataFrame() const {
  if (!error_.empty() || buffered() < kDataFrameHeaderSize) return std::nullopt;
  const std::uint8_t* p = buffer_.data() + start_;
  const std::uint32_t length = LoadBigEndian32(p);
  if (p[4] != kFrameTypeData || length < 6 || length > max_frame_size_) return std::nullopt;
  DataFrameStart start;
  start.stream_id = LoadBigEndian32(p + kFrameHeaderSize);
  start.payload_size = length - 6;
  start.payload_buffered = std::min(start.payload_size, buffered() - kDataFrameHeaderSize);
  start.payload = p + kDataFrameHeaderSize;
  return start;
}

void FrameDecoder::Discard(std::size_t size) {
  start_ += std::min(size, buffered());
  if (start_ == buffer_.size()) {
    buffer_.clear();
    start_ = 0;
  }
}

DecodeStatus FrameDecoder::Next(Frame& out) {
  if (!error_.empty()) return DecodeStatus::kError;
  DecodeResult result =
      DecodeFrame(buffer_.data() + start_, buffer_.size() - start_, out, max_frame_size_);
  if (result.status == DecodeStatus::kError) {
    error_ = std::move(result.error);
    return DecodeStatus::kError;
  }
  if (result.status == DecodeStatus::kFrame) {
    start_ += result.consumed;
    if (start_ == buffer_.size()) {
      buffer_.clear();
      start_ = 0;
    }
  }
  return result.status;
}

std::string_view FrameName(const Frame& frame) {
  static constexpr std::string_view kNames[] = {
      "Handshake", "HandshakeAck", "Register",    "RegisterAck", "OpenStream",
      "StreamAck", "Data",         "CloseStream", "Heartbeat",   "HeartbeatAck",
      "Error",     "PluginData",   "WindowUpdate"};
  static_assert(std::size(kNames) == std::variant_size_v<Frame>);
  return kNames[frame.index()];
}

std::string_view ProtocolName(Protocol protocol) {
  static constexpr std::string_view kNames[] = {"HTTP", "HTTPS", "HTTP2", "WebSocket",
                                                "GRPC", "TCP",   "QUIC"};
  const auto i = static_cast<std::size_t>(protocol);
  return i < std::size(kNames) ? kNames[i] : "unknown";
}

std::string_view HandshakeStatusName(HandshakeStatus status) {
  static constexpr std::string_view kNames[] = {
      "Success",         "InvalidToken", "UnsupportedVersion",
      "VersionMismatch", "RateLimited",  "TunnelIdTaken"};
  const auto i = static_cast<std::size_t>(status);
  return i < std::size(kNames) ? kNames[i] : "unknown";
}

std::string UuidToString(const Uuid& id) {
  return uuid::Format(id);
}

}  // namespace tunnelkit::ferro
