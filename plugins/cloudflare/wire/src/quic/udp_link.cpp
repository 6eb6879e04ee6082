#include "tunnelkit/cloudflare/wire/quic/udp_link.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/socket.h>

#include <boost/asio/buffer.hpp>

namespace tunnelkit::cloudflare::quic::detail {

namespace asio = boost::asio;
using boost::system::error_code;
using udp = asio::ip::udp;

void UdpLink::EnableGro() {
#ifdef UDP_GRO
  int on = 1;
  ::setsockopt(socket.native_handle(), SOL_UDP, UDP_GRO, &on, sizeof(on));
#endif
}

void UdpLink::SetBuffers(int bytes) {
  if (bytes <= 0) return;
  ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes));
  ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes));
}

std::size_t UdpLink::PathMtu() {
  int mtu = 0;
  socklen_t len = sizeof(mtu);
  const bool v6 = socket.local_endpoint().address().is_v6();
  if (::getsockopt(socket.native_handle(), v6 ? IPPROTO_IPV6 : IPPROTO_IP, v6 ? IPV6_MTU : IP_MTU,
                   &mtu, &len) != 0 ||
      mtu <= 0) {
    return 0;
  }
  return static_cast<std::size_t>(mtu);
}

bool UdpLink::ReceiveOnce(std::size_t& len, std::size_t& segment) {
  iovec iov{rx.data(), rx.size()};
  msghdr msg{};
  msg.msg_name = rx_from.data();
  msg.msg_namelen = static_cast<socklen_t>(rx_from.capacity());
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = ::recvmsg(socket.native_handle(), &msg, MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return false;
  rx_from.resize(msg.msg_namelen);
  len = static_cast<std::size_t>(n);
  segment = len;
#ifdef UDP_GRO
  for (cmsghdr* cm = CMSG_FIRSTHDR(&msg); cm != nullptr; cm = CMSG_NXTHDR(&msg, cm)) {
    if (cm->cmsg_level == SOL_UDP && cm->cmsg_type == UDP_GRO) {
      int size = 0;
      std::memcpy(&size, CMSG_DATA(cm), sizeof(size));
      if (size > 0) segment = static_cast<std::size_t>(size);
    }
  }
#endif
  return true;
}

void UdpLink::SendBatch(const std::uint8_t* data, std::size_t len, std::size_t segment,
                        std::size_t count, const ngtcp2_path& path) {
  if (count > 1 && gso) {
    iovec iov{const_cast<std::uint8_t*>(data), len};
    msghdr msg{};
    if (!connected) {
      msg.msg_name = const_cast<sockaddr*>(path.remote.addr);
      msg.msg_namelen = static_cast<socklen_t>(path.remote.addrlen);
    }
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(std::uint16_t))] = {};
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    cmsghdr* cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_UDP;
    cm->cmsg_type = UDP_SEGMENT;
    cm->cmsg_len = CMSG_LEN(sizeof(std::uint16_t));
    const auto segment_size = static_cast<std::uint16_t>(segment);
    std::memcpy(CMSG_DATA(cm), &segment_size, sizeof(segment_size));
    ssize_t sent;
    do {
      sent = ::sendmsg(socket.native_handle(), &msg, MSG_DONTWAIT);
    } while (sent < 0 && errno == EINTR);
    if (sent >= 0) return;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) return;  // loss
    if (errno != EIO && errno != EINVAL && errno != EOPNOTSUPP) return;
    // The kernel or the device cannot segment: one send per packet from now on.
    gso = false;
  }
  for (std::size_t offset = 0; offset < len; offset += segment) {
    Send(data + offset, std::min(segment, len - offset), path);
  }
}

void UdpLink::Send(const std::uint8_t* data, std::size_t len, const ngtcp2_path& path) {
  error_code ec;
  if (connected) {
    socket.send(asio::buffer(data, len), 0, ec);
  } else {
    udp::endpoint to;
    if (path.remote.addrlen > to.capacity()) return;
    std::memcpy(to.data(), path.remote.addr, path.remote.addrlen);
    to.resize(path.remote.addrlen);
    socket.send_to(asio::buffer(data, len), to, 0, ec);
  }
  // A full socket buffer or a transient error is packet loss; QUIC retransmits.
}

}  // namespace tunnelkit::cloudflare::quic::detail
