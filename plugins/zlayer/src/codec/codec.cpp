#include "codec/codec.hpp"

#include <limits>
#include <string_view>

#include "codec/utf8.hpp"
#include "tunnelkit/hex.hpp"

namespace tunnelkit::zlayer::codec {

namespace {

// Bounds-checked reader over one payload. The first failure sticks and names the field.
class PayloadReader {
 public:
  PayloadReader(std::span<const std::uint8_t> payload, std::string_view message)
      : payload_(payload), message_(message) {}

  bool failed() const { return !error_.empty(); }
  const std::string& error() const { return error_; }
  std::size_t remaining() const { return payload_.size() - offset_; }

  std::uint8_t U8(std::string_view field) {
    if (!Need(1, field)) return 0;
    return payload_[offset_++];
  }
  std::uint16_t U16(std::string_view field) {
    if (!Need(2, field)) return 0;
    const auto value = static_cast<std::uint16_t>(payload_[offset_] << 8 | payload_[offset_ + 1]);
    offset_ += 2;
    return value;
  }
  std::uint64_t U64(std::string_view field) {
    if (!Need(8, field)) return 0;
    std::uint64_t value = 0;
    for (int i = 0; i < 8; ++i) value = value << 8 | payload_[offset_ + i];
    offset_ += 8;
    return value;
  }
  Uuid ReadUuid(std::string_view field) {
    Uuid uuid;
    if (!Need(16, field)) return uuid;
    for (auto& b : uuid.bytes) b = payload_[offset_++];
    return uuid;
  }
  std::array<std::uint8_t, 16> Raw16(std::string_view field) {
    std::array<std::uint8_t, 16> raw{};
    if (!Need(16, field)) return raw;
    for (auto& b : raw) b = payload_[offset_++];
    return raw;
  }
  std::string Str8(std::string_view field) { return Text(U8(field), field); }
  std::string Str16(std::string_view field) { return Text(U16(field), field); }
  void Fail(std::string_view field, const std::string& why) {
    if (failed()) return;
    error_ = std::string(message_) + "." + std::string(field) + ": " + why;
  }
  std::string Rest() {
    std::string rest(reinterpret_cast<const char*>(payload_.data()) + offset_, remaining());
    offset_ = payload_.size();
    return rest;
  }

 private:
  bool Need(std::size_t n, std::string_view field) {
    if (failed()) return false;
    if (remaining() < n) {
      Fail(field, "payload too short (needs " + std::to_string(n) + " more bytes, has " +
                      std::to_string(remaining()) + ")");
      return false;
    }
    return true;
  }
  std::string Text(std::size_t length, std::string_view field) {
    if (!Need(length, field)) return {};
    std::string text(reinterpret_cast<const char*>(payload_.data()) + offset_, length);
    offset_ += length;
    if (!IsValidUtf8(text)) {
      Fail(field, "not valid UTF-8");
      return {};
    }
    return text;
  }
  std::span<const std::uint8_t> payload_;
  std::string_view message_;
  std::size_t offset_ = 0;
  std::string error_;
};

class PayloadWriter {
 public:
  explicit PayloadWriter(std::string_view message) : message_(message) {}
  bool failed() const { return !error_.empty(); }
  const std::string& error() const { return error_; }
  std::vector<std::uint8_t>& bytes() { return bytes_; }

  void U8(std::uint8_t v) { bytes_.push_back(v); }
  void U16(std::uint16_t v) {
    bytes_.push_back(static_cast<std::uint8_t>(v >> 8));
    bytes_.push_back(static_cast<std::uint8_t>(v));
  }
  void U64(std::uint64_t v) {
    for (int shift = 56; shift >= 0; shift -= 8)
      bytes_.push_back(static_cast<std::uint8_t>(v >> shift));
  }
  void Raw(std::span<const std::uint8_t> raw) {
    bytes_.insert(bytes_.end(), raw.begin(), raw.end());
  }
  void WriteUuid(const Uuid& uuid) { Raw(uuid.bytes); }
  void Bytes(std::string_view raw) { bytes_.insert(bytes_.end(), raw.begin(), raw.end()); }
  void Str8(std::string_view text, std::string_view field) { Text(text, 0xff, field, 1); }
  void Str16(std::string_view text, std::string_view field) { Text(text, 0xffff, field, 2); }

 private:
  void Text(std::string_view text, std::size_t max, std::string_view field, int prefix) {
    if (failed()) return;
    if (text.size() > max) {
      error_ = std::string(message_) + "." + std::string(field) + ": " +
               std::to_string(text.size()) + " bytes do not fit a " + std::to_string(prefix * 8) +
               "-bit length (max " + std::to_string(max) + ")";
      return;
    }
    if (!IsValidUtf8(text)) {
      error_ = std::string(message_) + "." + std::string(field) + ": not valid UTF-8";
      return;
    }
    if (prefix == 1) {
      U8(static_cast<std::uint8_t>(text.size()));
    } else {
      U16(static_cast<std::uint16_t>(text.size()));
    }
    Bytes(text);
  }

  std::string_view message_;
  std::vector<std::uint8_t> bytes_;
  std::string error_;
};

// The replies that are one id and the extension trailer (AuthOk, RegisterOk).
template <typename M>
M DecodeIdAndTrailer(PayloadReader& r, Uuid M::*id, const char* field) {
  M m;
  m.*id = r.ReadUuid(field);
  m.trailer = r.Rest();
  return m;
}

Message DecodePayload(MessageType type, PayloadReader& r) {
  switch (type) {
    case MessageType::kAuth: {
      Auth m;
      m.token = r.Str16("token");
      m.client_id = r.ReadUuid("client_id");
      m.trailer = r.Rest();
      return m;
    }
    case MessageType::kAuthOk:
      return DecodeIdAndTrailer(r, &AuthOk::tunnel_id, "tunnel_id");
    case MessageType::kAuthFail:
      return AuthFail{r.Str16("reason")};
    case MessageType::kRegister: {
      Register m;
      m.name = r.Str8("name");
      const std::uint8_t protocol = r.U8("protocol");
      if (!r.failed() && protocol > 1) {
        r.Fail("protocol", "unknown value " + std::to_string(protocol) + " (0 = TCP, 1 = UDP)");
        return m;
      }
      m.protocol = static_cast<ServiceProtocol>(protocol);
      m.local_port = r.U16("local_port");
      m.remote_port = r.U16("remote_port");
      return m;
    }
    case MessageType::kRegisterOk:
      return DecodeIdAndTrailer(r, &RegisterOk::service_id, "service_id");
    case MessageType::kRegisterFail:
      return RegisterFail{r.Str16("reason")};
    case MessageType::kConnect: {
      Connect m;
      m.service_id = r.ReadUuid("service_id");
      m.connection_id = r.ReadUuid("connection_id");
      m.client_addr = r.Str16("client_addr");
      return m;
    }
    case MessageType::kConnectAck:
      return ConnectAck{r.ReadUuid("connection_id")};
    case MessageType::kConnectFail: {
      ConnectFail m;
      m.connection_id = r.ReadUuid("connection_id");
      m.reason = r.Str16("reason");
      return m;
    }
    case MessageType::kHeartbeat:
      return Heartbeat{r.U64("timestamp")};
    case MessageType::kHeartbeatAck:
      return HeartbeatAck{r.U64("timestamp")};
    case MessageType::kUnregister:
      return Unregister{r.ReadUuid("service_id")};
    case MessageType::kDisconnect:
      return Disconnect{r.Str16("reason")};
    case MessageType::kDataAttach: {
      DataAttach m;
      m.tunnel_id = r.ReadUuid("tunnel_id");
      m.connection_id = r.ReadUuid("connection_id");
      m.secret = r.Raw16("secret");
      return m;
    }
  }
  return AuthFail{};  // unreachable: the type was checked by the caller
}

bool IsKnownType(std::uint8_t code) {
  switch (static_cast<MessageType>(code)) {
    case MessageType::kAuth:
    case MessageType::kAuthOk:
    case MessageType::kAuthFail:
    case MessageType::kRegister:
    case MessageType::kRegisterOk:
    case MessageType::kRegisterFail:
    case MessageType::kConnect:
    case MessageType::kConnectAck:
    case MessageType::kConnectFail:
    case MessageType::kHeartbeat:
    case MessageType::kHeartbeatAck:
    case MessageType::kUnregister:
    case MessageType::kDisconnect:
    case MessageType::kDataAttach:
      return true;
  }
  return false;
}

std::string Hex8(std::uint8_t v) {
  std::string text = "0x";
  hex::AppendByte(text, v);
  return text;
}

struct EncodeVisitor {
  PayloadWriter& w;
  void operator()(const Auth& m) {
    w.Str16(m.token, "token");
    w.WriteUuid(m.client_id);
    w.Bytes(m.trailer);
  }
  void operator()(const AuthOk& m) {
    w.WriteUuid(m.tunnel_id);
    w.Bytes(m.trailer);
  }
  void operator()(const AuthFail& m) { w.Str16(m.reason, "reason"); }
  void operator()(const Register& m) {
    w.Str8(m.name, "name");
    w.U8(static_cast<std::uint8_t>(m.protocol));
    w.U16(m.local_port);
    w.U16(m.remote_port);
  }
  void operator()(const RegisterOk& m) {
    w.WriteUuid(m.service_id);
    w.Bytes(m.trailer);
  }
  void operator()(const RegisterFail& m) { w.Str16(m.reason, "reason"); }
  void operator()(const Connect& m) {
    w.WriteUuid(m.service_id);
    w.WriteUuid(m.connection_id);
    w.Str16(m.client_addr, "client_addr");
  }
  void operator()(const ConnectAck& m) { w.WriteUuid(m.connection_id); }
  void operator()(const ConnectFail& m) {
    w.WriteUuid(m.connection_id);
    w.Str16(m.reason, "reason");
  }
  void operator()(const Heartbeat& m) { w.U64(m.timestamp_ms); }
  void operator()(const HeartbeatAck& m) { w.U64(m.timestamp_ms); }
  void operator()(const Unregister& m) { w.WriteUuid(m.service_id); }
  void operator()(const Disconnect& m) { w.Str16(m.reason, "reason"); }
  void operator()(const DataAttach& m) {
    w.WriteUuid(m.tunnel_id);
    w.WriteUuid(m.connection_id);
    w.Raw(m.secret);
  }
};

}  // namespace

DecodeResult Decode(std::span<const std::uint8_t> bytes) {
  DecodeResult result;
  if (bytes.size() < kHeaderSize) {
    result.error =
        "message shorter than the 5-byte header (" + std::to_string(bytes.size()) + " bytes)";
    return result;
  }
  const std::uint8_t code = bytes[0];
  if (!IsKnownType(code)) {
    result.error = "unknown message type " + Hex8(code);
    return result;
  }
  const std::uint32_t length = static_cast<std::uint32_t>(bytes[1]) << 24 |
                               static_cast<std::uint32_t>(bytes[2]) << 16 |
                               static_cast<std::uint32_t>(bytes[3]) << 8 | bytes[4];
  const auto type = static_cast<MessageType>(code);
  if (length > kMaxPayloadSize) {
    result.error = std::string(MessageTypeName(type)) + ": payload length " +
                   std::to_string(length) + " exceeds the limit of " +
                   std::to_string(kMaxPayloadSize);
    return result;
  }
  if (bytes.size() - kHeaderSize < length) {
    result.error = std::string(MessageTypeName(type)) + ": incomplete message (payload length " +
                   std::to_string(length) + ", " + std::to_string(bytes.size() - kHeaderSize) +
                   " bytes present)";
    return result;
  }
  PayloadReader reader(bytes.subspan(kHeaderSize, length), MessageTypeName(type));
  Message message = DecodePayload(type, reader);
  if (reader.failed()) {
    result.error = reader.error();
    return result;
  }
  result.ok = true;
  result.message = std::move(message);
  result.consumed = kHeaderSize + length;
  return result;
}

EncodeResult Encode(const Message& message) {
  EncodeResult result;
  const MessageType type = TypeOf(message);
  PayloadWriter writer(MessageTypeName(type));
  std::visit(EncodeVisitor{writer}, message);
  if (writer.failed()) {
    result.error = writer.error();
    return result;
  }
  const auto& payload = writer.bytes();
  if (payload.size() > kMaxPayloadSize) {
    result.error = std::string(MessageTypeName(type)) + ": payload of " +
                   std::to_string(payload.size()) + " bytes exceeds the limit of " +
                   std::to_string(kMaxPayloadSize);
    return result;
  }
  const auto length = static_cast<std::uint32_t>(payload.size());
  result.bytes.reserve(kHeaderSize + payload.size());
  result.bytes.push_back(static_cast<std::uint8_t>(type));
  for (int shift = 24; shift >= 0; shift -= 8) {
    result.bytes.push_back(static_cast<std::uint8_t>(length >> shift));
  }
  result.bytes.insert(result.bytes.end(), payload.begin(), payload.end());
  result.ok = true;
  return result;
}

}  // namespace tunnelkit::zlayer::codec
