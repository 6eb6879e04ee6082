// TunnelServer's records (private to the server's sources): an agent's link, its registered
// services with their public ports, public connections waiting for the agent, UDP flows.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "server/tunnel_server.hpp"
#include "transport/control_send.hpp"
#include "transport/ws_connection.hpp"
#include "tunnelkit/net/listener.hpp"

namespace tunnelkit::zlayer {

// The short names of the server's sources (private header: sources only).
namespace asio = boost::asio;
using boost::asio::ip::tcp;
using boost::asio::ip::udp;
using transport::SendControl;
using transport::WsConnection;

struct TunnelServer::Service {
  codec::Uuid id;
  std::string name;
  codec::ServiceProtocol protocol = codec::ServiceProtocol::kTcp;
  std::uint16_t local_port = 0;
  std::uint16_t public_port = 0;
  std::weak_ptr<Tunnel> tunnel;
  std::unique_ptr<net::Listener> listener;
  std::unique_ptr<udp::socket> udp_socket;
  std::map<udp::endpoint, std::shared_ptr<UdpFlow>> flows;
  bool closed = false;
};

struct TunnelServer::UdpFlow {
  codec::Uuid connection_id;
  udp::endpoint client;
  std::weak_ptr<Service> service;
  std::shared_ptr<transport::DataSocket> data;   // once attached
  std::deque<std::vector<std::uint8_t>> queued;  // datagrams that arrived before the attach
  std::chrono::steady_clock::time_point last_activity = std::chrono::steady_clock::now();
  net::ConnectionLimiter::Lease lease;  // the flow's public-connection slot
};

struct TunnelServer::Pending {
  codec::Uuid connection_id;
  std::shared_ptr<Service> service;
  std::unique_ptr<tcp::socket> socket;  // TCP
  std::shared_ptr<UdpFlow> flow;        // UDP
  std::unique_ptr<asio::steady_timer> expiry;
  net::ConnectionLimiter::Lease lease;  // TCP: the public connection's slot, kept to its end
};

struct TunnelServer::Tunnel {
  codec::Uuid id;
  std::string token_hash;
  std::string peer;
  std::shared_ptr<WsConnection> conn;
  bool extended = false;  // the agent speaks tunnelkit's data plane
  bool shared = false;    // ... and shares data WebSockets between connections
  std::array<std::uint8_t, 16> data_secret{};
  std::map<codec::Uuid, std::shared_ptr<Service>> services;
  std::map<codec::Uuid, std::shared_ptr<Pending>> pending;
  // Data upgrades admitted by this link's credential, until their DataAttach.
  net::ConnectionLimiter data_upgrades;
  std::string end_reason;
};

}  // namespace tunnelkit::zlayer
