// The edge emulator's state (tools/cfedge): quick tunnels it issued through its API, and the
// connections registered for them. It decides registerConnection's answer the way the spec
// describes the edge (section 4): credentials checked against the issued tunnel, EDUPCONN for a
// connection index that is already registered. Its routing table maps public host names to the
// live connections of a tunnel (the public HTTP listener uses it).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "tunnelkit/cloudflare/wire/api/quick_tunnel.hpp"
#include "tunnelkit/cloudflare/wire/rpc/registration_types.hpp"
#include "tunnelkit/stream.hpp"

namespace tunnelkit::cloudflare::emulator {

// One client connection to the edge (a QUIC connection, or any transport carrying the control
// stream). The public ingress opens data streams through it.
class EdgeConnection {
 public:
  virtual ~EdgeConnection() = default;
  virtual std::string Describe() const = 0;
  // A new edge-opened bidirectional stream for one visitor request. Throws std::runtime_error
  // (or QuicError) when the connection cannot carry one; the default transport cannot.
  virtual boost::asio::awaitable<std::shared_ptr<Stream>> OpenDataStream();
  // Closes the connection (QUIC: CONNECTION_CLOSE); its registrations end with it.
  virtual void Drop() {}
};

struct Registration {
  Uuid tunnel_id{};
  std::string hostname;
  std::uint8_t conn_index = 0;
  Uuid connection_id{};
  std::string location;
  ClientInfo client;
  std::weak_ptr<EdgeConnection> connection;
  std::uint64_t sequence = 0;  // order of registration (larger: more recent)
};

class TunnelRegistry {
 public:
  struct Options {
    std::string domain = "trycloudflare.com";
    std::vector<std::string> locations = {"lhr01"};  // colo names, used round-robin
    bool reuse_tunnel = false;  // every POST /tunnel returns the same tunnel (tests: EDUPCONN)
  };

  explicit TunnelRegistry(Options options);

  // A new quick tunnel with random id, words host name, account tag and 32-byte secret.
  QuickTunnel Issue();
  // Adds a tunnel made elsewhere (tests).
  void Add(const QuickTunnel& tunnel);
  std::size_t issued() const { return tunnels_.size(); }

  RegistrationResult Register(const RegistrationRequest& request,
                              std::weak_ptr<EdgeConnection> connection);
  // Removes one registration; false if it was not there.
  bool Unregister(const Uuid& tunnel_id, std::uint8_t conn_index, const Uuid& connection_id);

  // Live registrations of the tunnel serving `host` (case-insensitive, port ignored); empty if
  // the host is unknown or has no connection.
  std::vector<Registration> Route(const std::string& host) const;
  std::vector<Registration> registrations() const;
  // Live registrations of the tunnel that registered a connection most recently (tcp ingress).
  std::vector<Registration> MostRecentTunnel() const;
  // Every issued or added tunnel (for --state).
  std::vector<QuickTunnel> tunnels() const;

  // Called with one line per event ("registered ...", "unregistered ...", "refused ...").
  std::function<void(const std::string&)> on_event;

 private:
  void Emit(const std::string& line) const;
  Options options_;
  std::map<Uuid, QuickTunnel> tunnels_;
  std::optional<QuickTunnel> reused_;
  std::map<std::string, Uuid> hosts_;  // lower-case host name -> tunnel id
  std::map<std::pair<Uuid, std::uint8_t>, Registration> registrations_;
  std::size_t next_location_ = 0;
  std::uint64_t next_sequence_ = 1;
};

}  // namespace tunnelkit::cloudflare::emulator
