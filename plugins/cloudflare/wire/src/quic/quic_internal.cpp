#include "quic_internal.hpp"

#include <cstdio>

#include <gnutls/crypto.h>

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace tunnelkit::cloudflare::quic::detail {

namespace asio = boost::asio;

ngtcp2_tstamp Now() {
  return static_cast<ngtcp2_tstamp>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::steady_clock::now().time_since_epoch())
                                        .count());
}

ngtcp2_duration ToDuration(std::chrono::milliseconds ms) {
  return static_cast<ngtcp2_duration>(ms.count()) * NGTCP2_MILLISECONDS;
}

void Random(std::uint8_t* dest, std::size_t len) {
  (void)gnutls_rnd(GNUTLS_RND_RANDOM, dest, len);
}

asio::awaitable<void> WaitSignal(asio::steady_timer& signal) {
  boost::system::error_code ec;
  co_await signal.async_wait(asio::redirect_error(asio::use_awaitable, ec));
}

void Notify(asio::steady_timer& signal) {
  signal.cancel();
}

void InitSignal(asio::steady_timer& signal) {
  signal.expires_at(asio::steady_timer::time_point::max());
}

std::string Hex(std::uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string OneLine(std::string s) {
  for (char& c : s) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

ngtcp2_path PathOf(asio::ip::udp::endpoint& local, asio::ip::udp::endpoint& remote) {
  return ngtcp2_path{
      {reinterpret_cast<ngtcp2_sockaddr*>(local.data()), static_cast<ngtcp2_socklen>(local.size())},
      {reinterpret_cast<ngtcp2_sockaddr*>(remote.data()),
       static_cast<ngtcp2_socklen>(remote.size())},
      nullptr};
}

}  // namespace tunnelkit::cloudflare::quic::detail
