// Options of the QUIC client and server. Defaults follow what cloudflared uses against the edge
// (specs/cloudflare.md, sections 3 and 14): ALPN "argotunnel", SNI "quic.cftunnel.com",
// keepalive PING every second, 5 s idle timeout, max_datagram_frame_size 1350.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace tunnelkit::cloudflare::quic {

// Transport settings shared by both roles.
struct QuicTransportOptions {
  // Sends a PING when nothing was sent for this long; 0 disables keepalive.
  std::chrono::milliseconds keepalive_interval{1000};
  // max_idle_timeout transport parameter; the connection dies after this much silence.
  std::chrono::milliseconds idle_timeout{5000};
  // The whole handshake must finish within this time.
  std::chrono::milliseconds handshake_timeout{5000};
  // Receive windows. A stream buffers at most stream_receive_window unread bytes; the
  // connection at most connection_receive_window over all streams. Windows move forward only
  // as the application reads, so a slow reader pushes back on its sender.
  std::uint64_t stream_receive_window = 1 << 20;
  std::uint64_t connection_receive_window = 16 << 20;
  // How many bidirectional streams the peer may have open at once.
  std::uint64_t max_incoming_bidi_streams = 1000;
  // Advertised for compatibility with cloudflared; DATAGRAM frames are received and dropped.
  std::uint64_t max_datagram_frame_size = 1350;
  // Largest UDP payload we send (path MTU discovery probes up to it from 1200).
  std::size_t max_udp_payload = 1452;
  // A client whose server is on this host (a loopback path) sends packets as large as the
  // loopback device carries (its MTU, from the kernel: 64 KiB), within the server's
  // max_udp_payload_size, once the handshake is done; there is no path to discover and
  // per-packet costs (AEAD calls, ngtcp2's packet loop, syscalls) dominate bulk transfers.
  // Other paths keep max_udp_payload and path MTU discovery.
  bool loopback_mtu = true;
  // Socket buffers asked for (SO_RCVBUF / SO_SNDBUF, capped by the kernel's rmem_max and
  // wmem_max), as quic-go does: the default ~200 KiB overflows, and drops packets, while a
  // busy event loop is away from the socket.
  int socket_buffer = 4 << 20;
};

struct QuicClientOptions {
  std::string alpn = "argotunnel";
  std::string sni = "quic.cftunnel.com";
  // Trust roots: a PEM file, or PEM text, or (both empty) the system trust store.
  std::string ca_file;
  std::string ca_pem;
  // Verify the server certificate against the roots and the SNI name. Turning this off logs a
  // loud warning on every connection.
  bool verify_peer = true;
  QuicTransportOptions transport;
};

struct QuicServerOptions {
  std::string alpn = "argotunnel";
  std::string cert_file;  // PEM chain, leaf first
  std::string key_file;   // PEM private key
  QuicTransportOptions transport;
};

}  // namespace tunnelkit::cloudflare::quic
