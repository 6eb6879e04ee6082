#include "codec/extension.hpp"

namespace tunnelkit::zlayer::codec {

namespace {

bool HasMagic(std::string_view trailer) {
  return trailer.substr(0, kExtensionMagic.size()) == kExtensionMagic;
}

}  // namespace

std::string EncodeAgentHello(const AgentHello& hello) {
  std::string out(kExtensionMagic);
  out.push_back(static_cast<char>(hello.version));
  if (hello.features != 0) out.push_back(static_cast<char>(hello.features));
  return out;
}

std::optional<AgentHello> DecodeAgentHello(std::string_view trailer) {
  if (trailer.size() < kExtensionMagic.size() + 1 || !HasMagic(trailer)) return std::nullopt;
  AgentHello hello;
  hello.version = static_cast<std::uint8_t>(trailer[kExtensionMagic.size()]);
  if (hello.version < 1) return std::nullopt;
  if (trailer.size() > kExtensionMagic.size() + 1) {
    hello.features = static_cast<std::uint8_t>(trailer[kExtensionMagic.size() + 1]);
  }
  return hello;
}

std::string EncodeServerHello(const ServerHello& hello) {
  std::string out(kExtensionMagic);
  out.push_back(static_cast<char>(hello.version));
  out.append(reinterpret_cast<const char*>(hello.data_secret.data()), hello.data_secret.size());
  if (hello.features != 0) out.push_back(static_cast<char>(hello.features));
  return out;
}

std::optional<ServerHello> DecodeServerHello(std::string_view trailer) {
  const std::size_t need = kExtensionMagic.size() + 1 + 16;
  if (trailer.size() < need || !HasMagic(trailer)) return std::nullopt;
  ServerHello hello;
  hello.version = static_cast<std::uint8_t>(trailer[kExtensionMagic.size()]);
  if (hello.version < 1) return std::nullopt;
  for (std::size_t i = 0; i < 16; ++i) {
    hello.data_secret[i] = static_cast<std::uint8_t>(trailer[kExtensionMagic.size() + 1 + i]);
  }
  if (trailer.size() > need) hello.features = static_cast<std::uint8_t>(trailer[need]);
  return hello;
}

std::string EncodeRegisterExtra(const RegisterExtra& extra) {
  std::string out(kExtensionMagic);
  out.push_back(static_cast<char>(extra.public_port >> 8));
  out.push_back(static_cast<char>(extra.public_port & 0xff));
  return out;
}

std::optional<RegisterExtra> DecodeRegisterExtra(std::string_view trailer) {
  if (trailer.size() < kExtensionMagic.size() + 2 || !HasMagic(trailer)) return std::nullopt;
  RegisterExtra extra;
  extra.public_port = static_cast<std::uint16_t>(static_cast<std::uint8_t>(trailer[4]) << 8 |
                                                 static_cast<std::uint8_t>(trailer[5]));
  return extra;
}

DataFrameResult DecodeDataFrame(std::span<const std::uint8_t> message) {
  DataFrameResult result;
  if (message.empty()) {
    result.error = "data frame: empty message";
    return result;
  }
  if (message[0] > 2) {
    result.error = "data frame: unknown kind " + std::to_string(message[0]);
    return result;
  }
  const auto payload = message.subspan(1);
  if (payload.size() > kMaxDataFramePayload) {
    result.error = "data frame: payload of " + std::to_string(payload.size()) +
                   " bytes exceeds the limit of " + std::to_string(kMaxDataFramePayload);
    return result;
  }
  result.frame.kind = static_cast<DataFrameKind>(message[0]);
  if (result.frame.kind == DataFrameKind::kFin && !payload.empty()) {
    result.error = "data frame: end-of-writes frame with a payload";
    return result;
  }
  result.frame.payload = payload;
  result.ok = true;
  return result;
}

}  // namespace tunnelkit::zlayer::codec
