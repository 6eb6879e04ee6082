// The ZLayer `zlayer-tunnel` control-channel messages (specs/zlayer.md section 2), plus the
// tunnelkit data-plane attach message. Plain data: no I/O, no Asio.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace tunnelkit::zlayer::codec {

// 16 raw bytes in RFC 4122 order (as printed).
struct Uuid {
  std::array<std::uint8_t, 16> bytes{};

  // "00112233-4455-6677-8899-aabbccddeeff" (lowercase).
  std::string ToString() const;
  // Accepts the hyphenated 36-character form only; nullopt otherwise.
  static std::optional<Uuid> Parse(std::string_view text);
  bool IsNil() const;
  friend bool operator==(const Uuid&, const Uuid&) = default;
  friend auto operator<=>(const Uuid&, const Uuid&) = default;
};

enum class MessageType : std::uint8_t {
  kAuth = 0x01,
  kAuthOk = 0x02,
  kAuthFail = 0x03,
  kRegister = 0x10,
  kRegisterOk = 0x11,
  kRegisterFail = 0x12,
  kConnect = 0x20,
  kConnectAck = 0x21,
  kConnectFail = 0x22,
  kHeartbeat = 0x30,
  kHeartbeatAck = 0x31,
  kUnregister = 0x40,
  kDisconnect = 0x41,
  // tunnelkit's own: first message of a data WebSocket (never sent to an upstream peer).
  kDataAttach = 0x70,
};

std::string_view MessageTypeName(MessageType type);

enum class ServiceProtocol : std::uint8_t { kTcp = 0, kUdp = 1 };

// Upstream decoders tolerate bytes after a payload's fields. tunnelkit uses that room in Auth,
// AuthOk and RegisterOk to negotiate its data plane (see extension.hpp); `trailer` holds those
// bytes verbatim (empty for upstream peers).
struct Auth {
  std::string token;
  Uuid client_id;
  std::string trailer;
  friend bool operator==(const Auth&, const Auth&) = default;
};
struct AuthOk {
  Uuid tunnel_id;
  std::string trailer;
  friend bool operator==(const AuthOk&, const AuthOk&) = default;
};
struct AuthFail {
  std::string reason;
  friend bool operator==(const AuthFail&, const AuthFail&) = default;
};
struct Register {
  std::string name;  // str8
  ServiceProtocol protocol = ServiceProtocol::kTcp;
  std::uint16_t local_port = 0;
  std::uint16_t remote_port = 0;  // 0 = any port of the server's range
  friend bool operator==(const Register&, const Register&) = default;
};
struct RegisterOk {
  Uuid service_id;
  std::string trailer;
  friend bool operator==(const RegisterOk&, const RegisterOk&) = default;
};
struct RegisterFail {
  std::string reason;
  friend bool operator==(const RegisterFail&, const RegisterFail&) = default;
};
struct Connect {
  Uuid service_id;
  Uuid connection_id;
  std::string client_addr;  // "203.0.113.7:51234", "[::1]:5000"
  friend bool operator==(const Connect&, const Connect&) = default;
};
struct ConnectAck {
  Uuid connection_id;
  friend bool operator==(const ConnectAck&, const ConnectAck&) = default;
};
struct ConnectFail {
  Uuid connection_id;
  std::string reason;
  friend bool operator==(const ConnectFail&, const ConnectFail&) = default;
};
struct Heartbeat {
  std::uint64_t timestamp_ms = 0;  // Unix milliseconds
  friend bool operator==(const Heartbeat&, const Heartbeat&) = default;
};
struct HeartbeatAck {
  std::uint64_t timestamp_ms = 0;  // echo of the Heartbeat's value
  friend bool operator==(const HeartbeatAck&, const HeartbeatAck&) = default;
};
struct Unregister {
  Uuid service_id;
  friend bool operator==(const Unregister&, const Unregister&) = default;
};
struct Disconnect {
  std::string reason;
  friend bool operator==(const Disconnect&, const Disconnect&) = default;
};
// tunnelkit data plane: binds a fresh WebSocket to one announced connection of a tunnel.
struct DataAttach {
  Uuid tunnel_id;
  Uuid connection_id;
  std::array<std::uint8_t, 16> secret{};  // from the server's AuthOk extension
  friend bool operator==(const DataAttach&, const DataAttach&) = default;
};

using Message =
    std::variant<Auth, AuthOk, AuthFail, Register, RegisterOk, RegisterFail, Connect, ConnectAck,
                 ConnectFail, Heartbeat, HeartbeatAck, Unregister, Disconnect, DataAttach>;

MessageType TypeOf(const Message& message);

}  // namespace tunnelkit::zlayer::codec
