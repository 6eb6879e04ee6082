// The UDP socket a QUIC connection sends on (shared between a server and its connections), with
// the kernel's batching: generic receive offload (many datagrams per read) and segmentation
// offload (many datagrams per sendmsg). Non-blocking: a full socket buffer is packet loss, which
// QUIC recovers from.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include <ngtcp2/ngtcp2.h>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/udp.hpp>

namespace tunnelkit::cloudflare::quic::detail {

struct UdpLink {
  explicit UdpLink(const boost::asio::any_io_executor& ex) : socket(ex) {}
  boost::asio::ip::udp::socket socket;
  bool connected = false;  // client sockets are connected to the server
  bool gso = true;         // UDP_SEGMENT works on this socket (cleared on the first refusal)
  std::vector<std::uint8_t> rx = std::vector<std::uint8_t>(65536);
  boost::asio::ip::udp::endpoint rx_from;

  // Asks the kernel to coalesce datagrams of one flow (UDP_GRO): one read then returns many
  // equal-sized datagrams back to back. Best effort: without it each read is one datagram.
  void EnableGro();
  // Asks for `bytes` of receive and send buffer (best effort, capped by the kernel).
  void SetBuffers(int bytes);
  // The MTU the kernel knows for this connected socket's path (IP_MTU / IPV6_MTU), 0 if none.
  std::size_t PathMtu();
  // One non-blocking read into `rx` (from `rx_from`): false when nothing is queued or on an
  // error. `segment` is the size of each datagram in rx[0, len) (the last may be shorter).
  bool ReceiveOnce(std::size_t& len, std::size_t& segment);
  // `count` packets of `segment` bytes (the last may be shorter) back to back in `data`, to
  // `path.remote` (ignored on a connected socket): one sendmsg with UDP_SEGMENT when the kernel
  // takes it, else one send per packet.
  void SendBatch(const std::uint8_t* data, std::size_t len, std::size_t segment, std::size_t count,
                 const ngtcp2_path& path);
  // One packet to `path.remote` (ignored on a connected socket).
  void Send(const std::uint8_t* data, std::size_t len, const ngtcp2_path& path);
};

}  // namespace tunnelkit::cloudflare::quic::detail
