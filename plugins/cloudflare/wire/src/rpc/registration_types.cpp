#include "tunnelkit/cloudflare/wire/rpc/registration_types.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace tunnelkit::cloudflare {

namespace {

constexpr std::size_t kMaxFeatures = 64;
constexpr std::size_t kMaxShortText = 1024;

kj::ArrayPtr<const kj::byte> AsBytes(const std::vector<std::uint8_t>& bytes) {
  return kj::ArrayPtr<const kj::byte>(bytes.data(), bytes.size());
}

kj::ArrayPtr<const kj::byte> AsBytes(const Uuid& id) {
  return kj::ArrayPtr<const kj::byte>(id.data(), id.size());
}

capnp::Text::Reader AsText(const std::string& text) {
  return capnp::Text::Reader(text.data(), text.size());
}

std::string ReadText(capnp::Text::Reader text, const char* field) {
  if (text.size() > kMaxShortText) {
    throw std::invalid_argument(std::string(field) + " is longer than 1024 bytes");
  }
  return std::string(text.cStr(), text.size());
}

Uuid ReadUuid(capnp::Data::Reader data, const char* field) {
  if (data.size() != 16) {
    throw std::invalid_argument(std::string(field) + " is " + std::to_string(data.size()) +
                                " bytes, not 16");
  }
  Uuid id{};
  std::copy(data.begin(), data.end(), id.begin());
  return id;
}

}  // namespace

std::vector<std::string> DefaultClientFeatures() {
  return {"allow_remote_config", "serialized_headers", "support_datagram_v2", "support_quic_eof",
          "management_logs"};
}

void WriteRegistrationParams(rpc::RegistrationServer::RegisterConnectionParams::Builder params,
                             const RegistrationRequest& request) {
  auto auth = params.initAuth();
  auth.setAccountTag(AsText(request.credentials.account_tag));
  auth.setTunnelSecret(AsBytes(request.credentials.secret));
  params.setTunnelId(AsBytes(request.credentials.tunnel_id));
  params.setConnIndex(request.conn_index);
  auto options = params.initOptions();
  auto client = options.initClient();
  client.setClientId(AsBytes(request.options.client.client_id));
  auto features =
      client.initFeatures(static_cast<unsigned>(request.options.client.features.size()));
  for (unsigned i = 0; i < features.size(); ++i) {
    features.set(i, AsText(request.options.client.features[i]));
  }
  client.setVersion(AsText(request.options.client.version));
  client.setArch(AsText(request.options.client.arch));
  options.setOriginLocalIp(AsBytes(request.options.origin_local_ip));
  options.setReplaceExisting(request.options.replace_existing);
  options.setCompressionQuality(request.options.compression_quality);
  options.setNumPreviousAttempts(request.options.num_previous_attempts);
}

RegistrationRequest ReadRegistrationParams(
    rpc::RegistrationServer::RegisterConnectionParams::Reader params) {
  RegistrationRequest request;
  auto auth = params.getAuth();
  request.credentials.account_tag = ReadText(auth.getAccountTag(), "auth.accountTag");
  auto secret = auth.getTunnelSecret();
  if (secret.size() > kMaxShortText) throw std::invalid_argument("auth.tunnelSecret is too long");
  request.credentials.secret.assign(secret.begin(), secret.end());
  request.credentials.tunnel_id = ReadUuid(params.getTunnelId(), "tunnelId");
  request.conn_index = params.getConnIndex();
  auto options = params.getOptions();
  auto client = options.getClient();
  auto client_id = client.getClientId();
  if (client_id.size() == 16) {
    std::copy(client_id.begin(), client_id.end(), request.options.client.client_id.begin());
  } else if (client_id.size() != 0) {
    throw std::invalid_argument("options.client.clientId is not 16 bytes");
  }
  auto features = client.getFeatures();
  if (features.size() > kMaxFeatures) {
    throw std::invalid_argument("options.client.features has more than 64 entries");
  }
  for (auto feature : features) {
    request.options.client.features.push_back(ReadText(feature, "options.client.features"));
  }
  request.options.client.version = ReadText(client.getVersion(), "options.client.version");
  request.options.client.arch = ReadText(client.getArch(), "options.client.arch");
  auto ip = options.getOriginLocalIp();
  if (ip.size() > 16) throw std::invalid_argument("options.originLocalIp is longer than 16 bytes");
  request.options.origin_local_ip.assign(ip.begin(), ip.end());
  request.options.replace_existing = options.getReplaceExisting();
  request.options.compression_quality = options.getCompressionQuality();
  request.options.num_previous_attempts = options.getNumPreviousAttempts();
  return request;
}

void WriteConnectionResponse(rpc::ConnectionResponse::Builder response,
                             const RegistrationResult& result) {
  auto union_ = response.initResult();
  if (result.registered) {
    auto details = union_.initConnectionDetails();
    details.setUuid(AsBytes(result.details.uuid));
    details.setLocationName(AsText(result.details.location));
    details.setTunnelIsRemotelyManaged(result.details.tunnel_is_remotely_managed);
  } else {
    auto error = union_.initError();
    error.setCause(AsText(result.error.cause));
    error.setRetryAfter(result.error.retry_after_ns);
    error.setShouldRetry(result.error.should_retry);
  }
}

RegistrationResult ReadConnectionResponse(rpc::ConnectionResponse::Reader response) {
  RegistrationResult result;
  auto union_ = response.getResult();
  switch (union_.which()) {
    case rpc::ConnectionResponse::Result::CONNECTION_DETAILS: {
      auto details = union_.getConnectionDetails();
      result.registered = true;
      result.details.uuid = ReadUuid(details.getUuid(), "connectionDetails.uuid");
      result.details.location =
          ReadText(details.getLocationName(), "connectionDetails.locationName");
      result.details.tunnel_is_remotely_managed = details.getTunnelIsRemotelyManaged();
      break;
    }
    case rpc::ConnectionResponse::Result::ERROR: {
      auto error = union_.getError();
      result.error.cause = ReadText(error.getCause(), "error.cause");
      result.error.retry_after_ns = error.getRetryAfter();
      result.error.should_retry = error.getShouldRetry();
      break;
    }
    default:
      throw std::invalid_argument("connection response has an unknown union member");
  }
  return result;
}

std::vector<std::uint8_t> IpTo16Bytes(const std::string& address) {
  std::vector<std::uint8_t> out(16, 0);
  in_addr v4{};
  in6_addr v6{};
  if (inet_pton(AF_INET, address.c_str(), &v4) == 1) {
    out[10] = 0xff;
    out[11] = 0xff;
    std::memcpy(out.data() + 12, &v4, 4);
    return out;
  }
  if (inet_pton(AF_INET6, address.c_str(), &v6) == 1) {
    std::memcpy(out.data(), &v6, 16);
    return out;
  }
  return {};
}

}  // namespace tunnelkit::cloudflare
