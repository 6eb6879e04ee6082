// tunnelkit's data-plane negotiation, carried where upstream ZLayer peers look no further:
// after the fields of Auth, AuthOk and RegisterOk (upstream decoders tolerate trailing payload
// bytes). A tunnelkit agent offers the extension in Auth; only then does a tunnelkit server
// answer with its own trailers, so an upstream agent or server never sees anything new.
//
// Data frames: after DataAttach, every binary message of a data WebSocket is one frame:
// kind u8 (0 data, 1 end of writes, 2 datagram) followed by the bytes.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace tunnelkit::zlayer::codec {

inline constexpr std::string_view kExtensionMagic = "TKDP";
inline constexpr std::uint8_t kExtensionVersion = 2;

// Optional feature bits, one byte after a hello's fixed fields. Peers that predate them stop
// reading before it (DecodeAgentHello / DecodeServerHello ignore what follows their fields), so
// an older tunnelkit peer neither sees nor sends it; it is only sent when a bit is set, so the
// trailers of an agent or server without features stay byte-identical to before.
inline constexpr std::uint8_t kFeatureSharedDataChannels = 0x01;  // several connections per
                                                                  // data WebSocket (mux)

// Auth trailer: the agent can attach data WebSockets; `features` offers extras.
struct AgentHello {
  std::uint8_t version = kExtensionVersion;
  std::uint8_t features = 0;
};
// AuthOk trailer: the secret the agent presents in DataAttach; `features` accepts a subset of
// what the agent offered.
struct ServerHello {
  std::uint8_t version = kExtensionVersion;
  std::array<std::uint8_t, 16> data_secret{};
  std::uint8_t features = 0;
};
// RegisterOk trailer: the public port the service got (upstream does not send it).
struct RegisterExtra {
  std::uint16_t public_port = 0;
};

std::string EncodeAgentHello(const AgentHello& hello);
// nullopt when the trailer is empty or not ours (an upstream peer): no extension.
std::optional<AgentHello> DecodeAgentHello(std::string_view trailer);
std::string EncodeServerHello(const ServerHello& hello);
std::optional<ServerHello> DecodeServerHello(std::string_view trailer);
std::string EncodeRegisterExtra(const RegisterExtra& extra);
std::optional<RegisterExtra> DecodeRegisterExtra(std::string_view trailer);

enum class DataFrameKind : std::uint8_t { kData = 0, kFin = 1, kDatagram = 2 };

// Largest payload of one data frame (one WebSocket message).
inline constexpr std::size_t kMaxDataFramePayload = 256 * 1024;

struct DataFrame {
  DataFrameKind kind = DataFrameKind::kData;
  std::span<const std::uint8_t> payload;  // views the input of DecodeDataFrame
};

struct DataFrameResult {
  bool ok = false;
  DataFrame frame;
  std::string error;
};

// One whole WebSocket message in, one frame out.
DataFrameResult DecodeDataFrame(std::span<const std::uint8_t> message);
// Writes the 1-byte frame header; the payload follows it in the same message.
inline constexpr std::size_t kDataFrameHeaderSize = 1;

}  // namespace tunnelkit::zlayer::codec
