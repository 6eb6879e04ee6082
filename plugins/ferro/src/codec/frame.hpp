// FerroTunnel 1.x frames as values (specs/ferrotunnel.md 2.5). Pure data: no I/O.
//
// Enum values are the bincode declaration indices, i.e. exactly what travels on the wire.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "tunnelkit/stream/uninit_bytes.hpp"

namespace tunnelkit::ferro {

using Bytes = tunnelkit::UninitBytes;
using Uuid = std::array<std::uint8_t, 16>;  // RFC-4122 byte order
using StringPair = std::pair<std::string, std::string>;

enum class HandshakeStatus : std::uint8_t {
  kSuccess = 0,
  kInvalidToken = 1,
  kUnsupportedVersion = 2,
  kVersionMismatch = 3,
  kRateLimited = 4,
  kTunnelIdTaken = 5,
};
inline constexpr std::uint32_t kHandshakeStatusCount = 6;

enum class RegisterStatus : std::uint8_t {
  kSuccess = 0,
  kServiceNameTaken = 1,
  kInvalidServiceName = 2,
  kQuotaExceeded = 3,
};
inline constexpr std::uint32_t kRegisterStatusCount = 4;

enum class StreamStatus : std::uint8_t { kAccepted = 0, kRejected = 1, kBackpressureApplied = 2 };
inline constexpr std::uint32_t kStreamStatusCount = 3;

// v1.0.3+ numbering (HTTP2 at 2); QUIC (6) exists from 1.0.7 on.
enum class Protocol : std::uint8_t {
  kHttp = 0,
  kHttps = 1,
  kHttp2 = 2,
  kWebSocket = 3,
  kGrpc = 4,
  kTcp = 5,
  kQuic = 6,
};
inline constexpr std::uint32_t kProtocolCount = 7;

enum class StreamPriority : std::uint8_t { kNormal = 0, kLow = 1, kHigh = 2, kCritical = 3 };
inline constexpr std::uint32_t kStreamPriorityCount = 4;

enum class ErrorCode : std::uint8_t {
  kProtocolError = 0,
  kAuthenticationFailed = 1,
  kSessionNotFound = 2,
  kStreamNotFound = 3,
  kTimeout = 4,
  kInternalServerError = 5,
  kServiceUnavailable = 6,
};
inline constexpr std::uint32_t kErrorCodeCount = 7;

struct CloseReason {
  enum class Kind : std::uint8_t {
    kNormal = 0,
    kTimeout = 1,
    kError = 2,  // carries `message`
    kLocalServiceUnreachable = 3,
    kProtocolViolation = 4,
  };
  Kind kind = Kind::kNormal;
  std::string message;  // only for kError
  bool operator==(const CloseReason&) const = default;
};
inline constexpr std::uint32_t kCloseReasonCount = 5;

struct Handshake {
  std::string token;
  std::optional<std::string> tunnel_id;
  std::uint8_t min_version = 1;
  std::uint8_t max_version = 1;
  std::vector<std::string> capabilities;
  bool operator==(const Handshake&) const = default;
};

struct HandshakeAck {
  Uuid session_id{};
  HandshakeStatus status = HandshakeStatus::kSuccess;
  std::uint8_t version = 0;
  std::vector<std::string> server_capabilities;
  bool operator==(const HandshakeAck&) const = default;
};

struct Register {
  std::string service_name;
  Protocol protocol = Protocol::kHttp;
  std::vector<StringPair> metadata;  // a HashMap on the Rust side: entries in wire order
  bool operator==(const Register&) const = default;
};

struct RegisterAck {
  std::string public_url;
  RegisterStatus status = RegisterStatus::kSuccess;
  bool operator==(const RegisterAck&) const = default;
};

struct OpenStream {
  std::uint32_t stream_id = 0;
  Protocol protocol = Protocol::kHttp;
  std::vector<StringPair> headers;
  std::optional<std::uint64_t> body_hint;
  StreamPriority priority = StreamPriority::kNormal;
  bool operator==(const OpenStream&) const = default;
};

struct StreamAck {
  std::uint32_t stream_id = 0;
  StreamStatus status = StreamStatus::kAccepted;
  bool operator==(const StreamAck&) const = default;
};

// Encoded as a type-0x01 frame; a bincode Data (tag 6) inside a control frame decodes too.
struct Data {
  std::uint32_t stream_id = 0;
  Bytes data;
  bool end_of_stream = false;
  bool operator==(const Data&) const = default;
};

struct CloseStream {
  std::uint32_t stream_id = 0;
  CloseReason reason;
  bool operator==(const CloseStream&) const = default;
};

struct Heartbeat {
  std::uint64_t timestamp = 0;  // Unix ms
  bool operator==(const Heartbeat&) const = default;
};

struct HeartbeatAck {
  std::uint64_t timestamp = 0;  // the server's own Unix ms, not an echo
  bool operator==(const HeartbeatAck&) const = default;
};

struct Error {
  std::optional<std::uint32_t> stream_id;
  ErrorCode code = ErrorCode::kProtocolError;
  std::string message;
  bool operator==(const Error&) const = default;
};

struct PluginData {
  std::string plugin_id;
  Bytes data;
  bool operator==(const PluginData&) const = default;
};

// tunnelkit extension (Frame tag 12): per-stream credit, sent only when both ends advertised
// kCapabilityFlow in the handshake. A stock FerroTunnel peer never sees it.
struct WindowUpdate {
  std::uint32_t stream_id = 0;
  std::uint32_t increment = 0;
  bool operator==(const WindowUpdate&) const = default;
};

// Alternatives in Frame tag order: the variant index is the wire tag.
using Frame =
    std::variant<Handshake, HandshakeAck, Register, RegisterAck, OpenStream, StreamAck, Data,
                 CloseStream, Heartbeat, HeartbeatAck, Error, PluginData, WindowUpdate>;

inline constexpr std::uint32_t kTagData = 6;
inline constexpr std::uint32_t kTagWindowUpdate = 12;

inline constexpr std::uint8_t kProtocolVersion = 1;
inline constexpr std::string_view kCapabilityBasic = "basic";
inline constexpr std::string_view kCapabilityTcp = "tcp";
inline constexpr std::string_view kCapabilityFlow = "tk-flow";

// "Handshake", "Data", ... for logs.
std::string_view FrameName(const Frame& frame);
std::string_view ProtocolName(Protocol protocol);
std::string_view HandshakeStatusName(HandshakeStatus status);

// "00112233-4455-6677-8899-aabbccddeeff"
std::string UuidToString(const Uuid& uuid);

}  // namespace tunnelkit::ferro
