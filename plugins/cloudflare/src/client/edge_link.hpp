// One connection from the client to the edge, whatever carries it. On the real wire that is
// QUIC (ALPN argotunnel, SNI quic.cftunnel.com, the edge's CA roots); `tcp://HOST:PORT` edge
// addresses select plain TCP carrying the control stream only, a test transport that cfedge
// also offers (--tcp-listen), so the layers above QUIC can be exercised on their own.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include "tunnelkit/stream.hpp"

namespace tunnelkit::cloudflare {

struct EdgeAddress {
  enum class Transport { kQuic, kTcp };
  Transport transport = Transport::kQuic;
  std::string host;
  std::string port;
  std::string Describe() const;
};

// "HOST:PORT", "[V6]:PORT" (QUIC) or "tcp://HOST:PORT". Empty error on success.
EdgeAddress ParseEdgeAddress(const std::string& text, std::string& error);

struct EdgeDialOptions {
  std::string ca_file;  // PEM roots replacing the built-in Cloudflare roots
  std::chrono::milliseconds timeout{15000};
};

class EdgeLink {
 public:
  virtual ~EdgeLink() = default;
  // The control stream: the first bidirectional stream the client opens.
  virtual boost::asio::awaitable<std::shared_ptr<Stream>> OpenControlStream() = 0;
  // Streams the edge opens (data and RPC streams) go to `handler`. The TCP test transport
  // carries the control stream only, so it never calls it.
  virtual void SetStreamHandler(std::function<void(std::shared_ptr<Stream>)> handler) = 0;
  // Closes the connection (application code 0 on QUIC).
  virtual void Close() = 0;
  // The edge's IP address as text (registerConnection's originLocalIp, as cloudflared sends).
  virtual std::string RemoteIp() const = 0;
  virtual std::string Describe() const = 0;
};

// Throws std::runtime_error with one line ("TLS verification failed: ...", "connection
// refused").
boost::asio::awaitable<std::unique_ptr<EdgeLink>> DialEdge(boost::asio::any_io_executor executor,
                                                           const EdgeAddress& address,
                                                           const EdgeDialOptions& options);

}  // namespace tunnelkit::cloudflare
