#include "emulator/tunnel_registry.hpp"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <stdexcept>

#include "tunnelkit/hex.hpp"

namespace tunnelkit::cloudflare::emulator {

namespace asio = boost::asio;

namespace {

constexpr std::array<const char*, 64> kWords = {
    "amber",  "anchor",  "apple",  "arrow",  "autumn", "basin",   "beacon",  "birch",
    "bloom",  "breeze",  "brook",  "canyon", "cedar",  "cliff",   "cloud",   "comet",
    "coral",  "crest",   "dawn",   "delta",  "dune",   "ember",   "fern",    "field",
    "flint",  "forest",  "frost",  "garden", "glade",  "glow",    "granite", "grove",
    "harbor", "hazel",   "island", "ivory",  "jade",   "lagoon",  "lake",    "lantern",
    "maple",  "meadow",  "mist",   "moon",   "moss",   "ocean",   "orchid",  "pebble",
    "pine",   "prairie", "quartz", "rain",   "reef",   "ridge",   "river",   "sage",
    "shore",  "sierra",  "spring", "stone",  "summit", "thistle", "valley",  "willow"};

std::vector<std::uint8_t> RandomBytes(std::size_t n) {
  std::vector<std::uint8_t> out(n);
  if (RAND_bytes(out.data(), static_cast<int>(n)) != 1)
    throw std::runtime_error("RAND_bytes failed");
  return out;
}

std::string Hex(const std::vector<std::uint8_t>& bytes) {
  return hex::Encode(bytes);
}

std::string Lower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

RegistrationResult Refuse(std::string cause) {
  RegistrationResult result;
  result.error.cause = std::move(cause);
  result.error.should_retry = false;
  return result;
}

}  // namespace

TunnelRegistry::TunnelRegistry(Options options) : options_(std::move(options)) {
  if (options_.locations.empty()) options_.locations = {"lhr01"};
}

QuickTunnel TunnelRegistry::Issue() {
  if (options_.reuse_tunnel && reused_) return *reused_;
  QuickTunnel tunnel;
  tunnel.credentials.tunnel_id = RandomUuid();
  do {
    auto pick = RandomBytes(4);
    tunnel.hostname.clear();
    for (auto b : pick) tunnel.hostname += std::string(kWords[b % kWords.size()]) + "-";
    tunnel.hostname.back() = '.';
    tunnel.hostname += options_.domain;
  } while (hosts_.count(tunnel.hostname) != 0);
  tunnel.name = "qt-" + Hex(RandomBytes(8));
  tunnel.credentials.account_tag = Hex(RandomBytes(16));
  tunnel.credentials.secret = RandomBytes(kTunnelSecretSize);
  Add(tunnel);
  if (options_.reuse_tunnel) reused_ = tunnel;
  return tunnel;
}

void TunnelRegistry::Add(const QuickTunnel& tunnel) {
  tunnels_[tunnel.credentials.tunnel_id] = tunnel;
  hosts_[Lower(tunnel.hostname)] = tunnel.credentials.tunnel_id;
}

RegistrationResult TunnelRegistry::Register(const RegistrationRequest& request,
                                            std::weak_ptr<EdgeConnection> connection) {
  const std::string id = FormatUuid(request.credentials.tunnel_id);
  const std::string who = "tunnel=" + id + " conn_index=" + std::to_string(request.conn_index);
  auto refuse = [&](std::string cause) {
    Emit("refused " + who + " cause=\"" + cause + "\"");
    return Refuse(std::move(cause));
  };
  auto it = tunnels_.find(request.credentials.tunnel_id);
  if (it == tunnels_.end()) return refuse("Unauthorized: unknown tunnel " + id);
  const auto& expected = it->second.credentials;
  // Constant-time comparisons: the lengths are not secret, the contents are.
  bool tag_ok = expected.account_tag.size() == request.credentials.account_tag.size() &&
                CRYPTO_memcmp(expected.account_tag.data(), request.credentials.account_tag.data(),
                              expected.account_tag.size()) == 0;
  if (!tag_ok) return refuse("Unauthorized: account tag does not match the tunnel");
  bool secret_ok = expected.secret.size() == request.credentials.secret.size() &&
                   CRYPTO_memcmp(expected.secret.data(), request.credentials.secret.data(),
                                 expected.secret.size()) == 0;
  if (!secret_ok) return refuse("Unauthorized: invalid tunnel secret");
  auto key = std::make_pair(request.credentials.tunnel_id, request.conn_index);
  auto existing = registrations_.find(key);
  if (existing != registrations_.end() && !existing->second.connection.expired()) {
    return refuse(kDuplicateConnectionCause);
  }
  Registration registration;
  registration.tunnel_id = request.credentials.tunnel_id;
  registration.hostname = it->second.hostname;
  registration.conn_index = request.conn_index;
  registration.connection_id = RandomUuid();
  registration.location = options_.locations[next_location_++ % options_.locations.size()];
  registration.client = request.options.client;
  registration.connection = std::move(connection);
  registration.sequence = next_sequence_++;
  registrations_[key] = registration;
  Emit("registered " + who + " hostname=" + registration.hostname +
       " connection=" + FormatUuid(registration.connection_id) +
       " location=" + registration.location + " client_version=" + registration.client.version +
       " features=" + std::to_string(registration.client.features.size()));
  RegistrationResult result;
  result.registered = true;
  result.details.uuid = registration.connection_id;
  result.details.location = registration.location;
  return result;
}

bool TunnelRegistry::Unregister(const Uuid& tunnel_id, std::uint8_t conn_index,
                                const Uuid& connection_id) {
  auto it = registrations_.find({tunnel_id, conn_index});
  if (it == registrations_.end() || it->second.connection_id != connection_id) return false;
  registrations_.erase(it);
  Emit("unregistered tunnel=" + FormatUuid(tunnel_id) +
       " conn_index=" + std::to_string(conn_index) + " connection=" + FormatUuid(connection_id));
  return true;
}

std::vector<Registration> TunnelRegistry::Route(const std::string& host) const {
  std::string name = Lower(host);
  if (auto colon = name.rfind(':');
      colon != std::string::npos && name.find(']') == std::string::npos) {
    name.resize(colon);
  }
  std::vector<Registration> out;
  auto it = hosts_.find(name);
  if (it == hosts_.end()) return out;
  for (const auto& [key, registration] : registrations_) {
    if (key.first == it->second && !registration.connection.expired()) out.push_back(registration);
  }
  return out;
}

std::vector<Registration> TunnelRegistry::registrations() const {
  std::vector<Registration> out;
  for (const auto& [key, registration] : registrations_) out.push_back(registration);
  return out;
}

std::vector<Registration> TunnelRegistry::MostRecentTunnel() const {
  const Registration* latest = nullptr;
  for (const auto& [key, registration] : registrations_) {
    if (registration.connection.expired()) continue;
    if (!latest || registration.sequence > latest->sequence) latest = &registration;
  }
  std::vector<Registration> out;
  if (!latest) return out;
  for (const auto& [key, registration] : registrations_) {
    if (key.first == latest->tunnel_id && !registration.connection.expired())
      out.push_back(registration);
  }
  return out;
}

std::vector<QuickTunnel> TunnelRegistry::tunnels() const {
  std::vector<QuickTunnel> out;
  for (const auto& [id, tunnel] : tunnels_) out.push_back(tunnel);
  return out;
}

asio::awaitable<std::shared_ptr<Stream>> EdgeConnection::OpenDataStream() {
  throw std::runtime_error(Describe() + " carries no data streams (plain-TCP test transport)");
  co_return nullptr;
}

void TunnelRegistry::Emit(const std::string& line) const {
  if (on_event) on_event(line);
}

}  // namespace tunnelkit::cloudflare::emulator
