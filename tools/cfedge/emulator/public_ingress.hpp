// The edge emulator's public side (tools/cfedge --http-listen, --tcp-ingress): what Cloudflare's
// edge does with a visitor's request for <words>.trycloudflare.com. Each HTTP request becomes one
// data stream (specs/cloudflare.md section 5) that the edge opens on a live connection of the
// tunnel serving the Host: preamble + ConnectRequest, the request body streamed, FIN; the
// client's ConnectResponse becomes the visitor's response head and its body is streamed back as
// it arrives. WebSocket upgrades turn the stream into a raw pipe after the 101. Nothing holds a
// whole body: memory per request is bounded by the buffers below plus QUIC's flow control.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "emulator/tunnel_registry.hpp"
#include "tunnelkit/stream.hpp"

namespace tunnelkit::cloudflare::emulator {

struct PublicIngressOptions {
  // How long the edge waits for the response head after sending the request (Cloudflare: 100 s,
  // then 524).
  std::chrono::milliseconds response_timeout{100'000};
  // How long a visitor connection may sit without sending a request head.
  std::chrono::milliseconds idle_timeout{60'000};
  std::uint32_t max_header_bytes = 64 * 1024;
  // One line per request ("proxied GET host/path status=200 conn_index=0 bytes=12") and per
  // failure worth logging.
  std::function<void(const std::string&)> on_event;
};

class PublicIngress {
 public:
  // `registry` outlives the ingress, and the ingress outlives every Serve* coroutine.
  PublicIngress(TunnelRegistry& registry, PublicIngressOptions options);

  // Serves HTTP/1.x requests from one visitor connection (keep-alive) until it closes or
  // fails. `visitor_ip` is what Cf-Connecting-Ip and X-Forwarded-For carry.
  boost::asio::awaitable<void> ServeHttp(std::unique_ptr<Stream> visitor, std::string visitor_ip);

  // Forwards one raw TCP connection as a type=tcp data stream to the tunnel that registered a
  // connection most recently (dest "<hostname>:<listen_port>", no metadata), then splices.
  boost::asio::awaitable<void> ServeTcp(std::unique_ptr<Stream> visitor, unsigned listen_port);

  std::uint64_t requests() const { return requests_; }

 private:
  struct Picked {
    std::shared_ptr<Stream> stream;
    Registration registration;
  };
  // A new data stream on one of `routes`, round-robin per tunnel; the next connection is tried
  // when opening fails. A null stream when none works.
  boost::asio::awaitable<Picked> OpenDataStream(const std::vector<Registration>& routes);
  void Emit(const std::string& line) const;

  class Exchange;
  TunnelRegistry& registry_;
  PublicIngressOptions options_;
  std::map<Uuid, std::size_t> next_;
  std::uint64_t requests_ = 0;
};

}  // namespace tunnelkit::cloudflare::emulator
