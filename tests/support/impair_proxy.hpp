// A userspace network impairment proxy for fault tests, between a client and a server on
// loopback: it listens on 127.0.0.1:<ephemeral> and forwards to 127.0.0.1:<upstream>.
//
// The kernels this suite runs on have no sch_netem and no netfilter tools, so `tc netem` in a
// network namespace is not available; this proxy stands in for it.
//   UDP (QUIC): each datagram is delayed (fixed + random jitter, which reorders), dropped or
//               duplicated independently, per direction, as netem does.
//   TCP:        bytes are delayed (ordering kept), throttled, forwarded in small writes
//               (fragmentation), or blackholed: nothing is forwarded and nothing is closed, so
//               the peers' kernels buffer and then stall, as behind a path with 100 % loss.
//               New connections made while blackholed are accepted but not connected onward
//               until the path heals (their TCP handshake stands in for the SYN the kernel
//               would retransmit).
// Everything runs on one thread of its own; the setters are thread-safe and apply to data
// read after the call.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace tunnelkit::test {

struct Impairment {
  std::chrono::milliseconds delay{0};   // added to every chunk / datagram, each direction
  std::chrono::milliseconds jitter{0};  // plus a uniform 0..jitter (UDP: reorders datagrams)
  double loss = 0;                      // UDP: probability a datagram is dropped
  double duplicate = 0;                 // UDP: probability a datagram is sent twice
  std::size_t max_write = 0;            // TCP: forward in writes of at most this many bytes
  std::size_t bytes_per_second = 0;     // TCP: throttle each direction to this rate
};

struct ImpairStats {
  std::uint64_t connections = 0;  // TCP connections accepted / UDP client addresses seen
  std::uint64_t forwarded = 0;    // bytes (TCP) or datagrams (UDP) delivered, both directions
  std::uint64_t dropped = 0;      // UDP datagrams dropped (loss or blackhole)
  std::uint64_t duplicated = 0;   // UDP datagrams sent twice
  std::uint64_t writes = 0;       // TCP writes made (shows fragmentation)
};

class ImpairProxy {
 public:
  enum class Protocol { kTcp, kUdp };
  enum class Direction { kBoth, kToServer, kToClient };

  ImpairProxy(Protocol protocol, int upstream_port);
  ~ImpairProxy();
  ImpairProxy(const ImpairProxy&) = delete;
  ImpairProxy& operator=(const ImpairProxy&) = delete;

  int port() const;  // where clients connect / send

  void Set(const Impairment& impairment);
  // 100 % loss until Heal(): UDP drops every datagram; TCP forwards nothing, closes nothing.
  // One direction only: a one-way outage (the other direction still flows).
  void Blackhole(Direction direction = Direction::kBoth);
  void Heal();
  // Closes every proxied TCP connection at once (both sides see a reset): a path that broke.
  void CutConnections();

  ImpairStats stats() const;

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace tunnelkit::test
