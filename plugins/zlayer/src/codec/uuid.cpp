#include "codec/messages.hpp"
#include "tunnelkit/uuid_text.hpp"

namespace tunnelkit::zlayer::codec {

std::string Uuid::ToString() const {
  return uuid::Format(bytes);
}

std::optional<Uuid> Uuid::Parse(std::string_view text) {
  auto parsed = uuid::Parse(text);
  if (!parsed) return std::nullopt;
  return Uuid{*parsed};
}

bool Uuid::IsNil() const {
  for (auto b : bytes) {
    if (b != 0) return false;
  }
  return true;
}

std::string_view MessageTypeName(MessageType type) {
  switch (type) {
    case MessageType::kAuth:
      return "Auth";
    case MessageType::kAuthOk:
      return "AuthOk";
    case MessageType::kAuthFail:
      return "AuthFail";
    case MessageType::kRegister:
      return "Register";
    case MessageType::kRegisterOk:
      return "RegisterOk";
    case MessageType::kRegisterFail:
      return "RegisterFail";
    case MessageType::kConnect:
      return "Connect";
    case MessageType::kConnectAck:
      return "ConnectAck";
    case MessageType::kConnectFail:
      return "ConnectFail";
    case MessageType::kHeartbeat:
      return "Heartbeat";
    case MessageType::kHeartbeatAck:
      return "HeartbeatAck";
    case MessageType::kUnregister:
      return "Unregister";
    case MessageType::kDisconnect:
      return "Disconnect";
    case MessageType::kDataAttach:
      return "DataAttach";
  }
  return "unknown";
}

MessageType TypeOf(const Message& message) {
  struct Visitor {
    MessageType operator()(const Auth&) const { return MessageType::kAuth; }
    MessageType operator()(const AuthOk&) const { return MessageType::kAuthOk; }
    MessageType operator()(const AuthFail&) const { return MessageType::kAuthFail; }
    MessageType operator()(const Register&) const { return MessageType::kRegister; }
    MessageType operator()(const RegisterOk&) const { return MessageType::kRegisterOk; }
    MessageType operator()(const RegisterFail&) const { return MessageType::kRegisterFail; }
    MessageType operator()(const Connect&) const { return MessageType::kConnect; }
    MessageType operator()(const ConnectAck&) const { return MessageType::kConnectAck; }
    MessageType operator()(const ConnectFail&) const { return MessageType::kConnectFail; }
    MessageType operator()(const Heartbeat&) const { return MessageType::kHeartbeat; }
    MessageType operator()(const HeartbeatAck&) const { return MessageType::kHeartbeatAck; }
    MessageType operator()(const Unregister&) const { return MessageType::kUnregister; }
    MessageType operator()(const Disconnect&) const { return MessageType::kDisconnect; }
    MessageType operator()(const DataAttach&) const { return MessageType::kDataAttach; }
  };
  return std::visit(Visitor{}, message);
}

}  // namespace tunnelkit::zlayer::codec
