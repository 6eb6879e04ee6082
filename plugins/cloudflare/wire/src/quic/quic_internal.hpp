// Small pieces shared by the QUIC connection's source files (private to the wire library):
// sizes of the send path, ngtcp2 clock and durations, randomness, the timer-as-signal idiom.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include <ngtcp2/ngtcp2.h>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/error_code.hpp>

namespace tunnelkit::cloudflare::quic::detail {

inline constexpr std::size_t kClientCidLen = 18;
inline constexpr std::size_t kMaxPacketsPerFlush = 64;
// Datagrams read from a socket before the connections they touched are flushed.
inline constexpr std::size_t kMaxDatagramsPerRead = 64;
inline constexpr std::size_t kTxBufferSize = 1500;
// Generic segmentation offload: consecutive packets of one flush leave in one sendmsg of up to
// kMaxGsoSegments equal-sized datagrams (the last may be shorter), cutting the syscalls per
// packet on the bulk path. Falls back to one send per packet where the kernel refuses it.
inline constexpr std::size_t kMaxGsoSegments = 44;  // 44 * 1452 < 65507, the largest UDP payload
// The largest UDP payload over IPv4 (65535 - 20 - 8) and our send buffer: one packet.
inline constexpr std::size_t kMaxUdpPayload = 65507;
// A Write() returns while at most this much of its stream is not yet in packets: the writer
// fetches its next buffer while the connection sends this one.
inline constexpr std::uint64_t kWriteBehind = 128 * 1024;

// ngtcp2's clock: steady_clock in nanoseconds.
ngtcp2_tstamp Now();
ngtcp2_duration ToDuration(std::chrono::milliseconds ms);
// GnuTLS's CSPRNG; it cannot fail once the library is initialised.
void Random(std::uint8_t* dest, std::size_t len);

// Waits until the timer is cancelled (a notification). Timers used this way always expire
// at max, so several waiters on one timer never disturb each other.
boost::asio::awaitable<void> WaitSignal(boost::asio::steady_timer& signal);
void Notify(boost::asio::steady_timer& signal);
void InitSignal(boost::asio::steady_timer& signal);

// "0x1a2b": QUIC error codes in log lines.
std::string Hex(std::uint64_t v);
// Line breaks to spaces, trailing spaces dropped (GnuTLS messages end in a newline).
std::string OneLine(std::string s);

// An ngtcp2_path viewing two endpoints (which must outlive it).
ngtcp2_path PathOf(boost::asio::ip::udp::endpoint& local, boost::asio::ip::udp::endpoint& remote);

}  // namespace tunnelkit::cloudflare::quic::detail

namespace tunnelkit::cloudflare::quic {

// The short names of the QUIC sources (private header: sources only).
namespace asio = boost::asio;
using boost::system::error_code;
using udp = boost::asio::ip::udp;
using namespace detail;  // NOLINT: the helpers above, in every QUIC source

}  // namespace tunnelkit::cloudflare::quic
