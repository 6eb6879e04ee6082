// registerConnection's parameters and answer as plain C++ values (specs/cloudflare.md 4.2-4.3),
// with the conversions to and from the generated Cap'n Proto types. Both the client and the
// edge emulator use them, so the two agree on every field by construction.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cloudflare/tunnelrpc.capnp.h"
#include "tunnelkit/cloudflare/wire/api/quick_tunnel.hpp"
#include "tunnelkit/cloudflare/wire/codec/encoding.hpp"

namespace tunnelkit::cloudflare {

struct ClientInfo {
  Uuid client_id{};  // the connector id: one per process
  std::vector<std::string> features;
  std::string version;
  std::string arch;  // <os>_<arch>, e.g. linux_amd64
};

struct ConnectionOptions {
  ClientInfo client;
  std::vector<std::uint8_t> origin_local_ip;  // 16 bytes (v4-mapped for IPv4); informational
  bool replace_existing = false;
  std::uint8_t compression_quality = 0;
  std::uint8_t num_previous_attempts = 0;
};

struct RegistrationRequest {
  TunnelCredentials credentials;
  std::uint8_t conn_index = 0;
  ConnectionOptions options;
};

struct ConnectionDetails {
  Uuid uuid{};
  std::string location;  // colo, e.g. lhr01
  bool tunnel_is_remotely_managed = false;
};

struct ConnectionError {
  std::string cause;  // "EDUPCONN" for a duplicate connection index
  std::int64_t retry_after_ns = 0;
  bool should_retry = false;
};

inline constexpr const char* kDuplicateConnectionCause = "EDUPCONN";

struct RegistrationResult {
  bool registered = false;
  ConnectionDetails details;  // when registered
  ConnectionError error;      // otherwise
};

// The features a quick-tunnel client announces (the five cloudflared sends).
std::vector<std::string> DefaultClientFeatures();

void WriteRegistrationParams(rpc::RegistrationServer::RegisterConnectionParams::Builder params,
                             const RegistrationRequest& request);
// Throws kj::Exception on malformed input (capnp), std::invalid_argument when a field breaks a
// limit (ids not 16 bytes, more than 64 features, strings over 1 KiB...).
RegistrationRequest ReadRegistrationParams(
    rpc::RegistrationServer::RegisterConnectionParams::Reader params);

void WriteConnectionResponse(rpc::ConnectionResponse::Builder response,
                             const RegistrationResult& result);
RegistrationResult ReadConnectionResponse(rpc::ConnectionResponse::Reader response);

// IPv4 or IPv6 text to Go's 16-byte form (v4-mapped); empty on failure.
std::vector<std::uint8_t> IpTo16Bytes(const std::string& address);

}  // namespace tunnelkit::cloudflare
