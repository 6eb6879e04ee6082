// The QUIC connection's UDP link on loopback: batches of packets leave in one sendmsg (GSO) or
// one send each, and arrive as the same datagrams whether the kernel coalesces them (GRO) or not.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "tunnelkit/cloudflare/wire/quic/udp_link.hpp"

namespace tunnelkit::cloudflare::quic::detail {
namespace {

using udp = boost::asio::ip::udp;

// Every datagram queued on `link` (waits up to about a second for `expected` of them).
std::vector<std::vector<std::uint8_t>> ReceiveAll(UdpLink& link, std::size_t expected) {
  std::vector<std::vector<std::uint8_t>> datagrams;
  for (int spin = 0; spin < 1000 && datagrams.size() < expected; ++spin) {
    std::size_t len = 0;
    std::size_t segment = 0;
    if (!link.ReceiveOnce(len, segment)) {
      ::usleep(1000);
      continue;
    }
    for (std::size_t off = 0; off < len; off += segment) {
      const std::size_t n = std::min(segment, len - off);
      datagrams.emplace_back(link.rx.begin() + static_cast<std::ptrdiff_t>(off),
                             link.rx.begin() + static_cast<std::ptrdiff_t>(off + n));
    }
  }
  return datagrams;
}

struct LinkPair {
  boost::asio::io_context io;
  UdpLink receiver{io.get_executor()};
  UdpLink sender{io.get_executor()};
  udp::endpoint to;
  udp::endpoint from;
  ngtcp2_path path{};

  explicit LinkPair(bool connect) {
    receiver.socket.open(udp::v4());
    receiver.socket.bind(udp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
    receiver.EnableGro();
    to = receiver.socket.local_endpoint();
    sender.socket.open(udp::v4());
    sender.socket.bind(udp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
    if (connect) {
      sender.socket.connect(to);
      sender.connected = true;
    }
    from = sender.socket.local_endpoint();
    path.local = {reinterpret_cast<ngtcp2_sockaddr*>(from.data()),
                  static_cast<ngtcp2_socklen>(from.size())};
    path.remote = {reinterpret_cast<ngtcp2_sockaddr*>(to.data()),
                   static_cast<ngtcp2_socklen>(to.size())};
  }
};

// Three packets back to back: two of `segment` bytes and a shorter last one.
std::vector<std::uint8_t> Packets(std::size_t segment) {
  std::vector<std::uint8_t> data(segment * 2 + segment / 2);
  std::iota(data.begin(), data.end(), std::uint8_t{1});
  return data;
}

void ExpectSameDatagrams(const std::vector<std::vector<std::uint8_t>>& got,
                         const std::vector<std::uint8_t>& sent, std::size_t segment) {
  ASSERT_EQ(got.size(), 3u);
  std::size_t off = 0;
  for (const auto& datagram : got) {
    const std::size_t n = std::min(segment, sent.size() - off);
    ASSERT_EQ(datagram.size(), n);
    EXPECT_TRUE(std::equal(datagram.begin(), datagram.end(), sent.begin() + off));
    off += n;
  }
}

TEST(UdpLinkTest, BatchOnAConnectedSocketArrivesAsItsDatagrams) {
  LinkPair pair(/*connect=*/true);
  const auto data = Packets(1200);
  pair.sender.SendBatch(data.data(), data.size(), 1200, 3, pair.path);
  ExpectSameDatagrams(ReceiveAll(pair.receiver, 3), data, 1200);
  EXPECT_EQ(pair.receiver.rx_from, pair.from);
}

TEST(UdpLinkTest, BatchOnAnUnconnectedSocketGoesToThePathsRemote) {
  LinkPair pair(/*connect=*/false);
  const auto data = Packets(1000);
  pair.sender.SendBatch(data.data(), data.size(), 1000, 3, pair.path);
  ExpectSameDatagrams(ReceiveAll(pair.receiver, 3), data, 1000);
}

TEST(UdpLinkTest, WithoutSegmentationEveryPacketIsSentAlone) {
  LinkPair pair(/*connect=*/false);
  pair.sender.gso = false;  // as after the kernel refused UDP_SEGMENT once
  const auto data = Packets(800);
  pair.sender.SendBatch(data.data(), data.size(), 800, 3, pair.path);
  ExpectSameDatagrams(ReceiveAll(pair.receiver, 3), data, 800);
  EXPECT_FALSE(pair.sender.gso);
}

TEST(UdpLinkTest, NothingQueuedIsNoRead) {
  LinkPair pair(/*connect=*/true);
  std::size_t len = 1;
  std::size_t segment = 1;
  EXPECT_FALSE(pair.receiver.ReceiveOnce(len, segment));
  const std::uint8_t one[] = {42};
  pair.sender.Send(one, sizeof one, pair.path);
  auto got = ReceiveAll(pair.receiver, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], std::vector<std::uint8_t>{42});
}

TEST(UdpLinkTest, ConnectedLoopbackSocketKnowsItsPathMtu) {
  LinkPair pair(/*connect=*/true);
  EXPECT_GE(pair.sender.PathMtu(), 1280u);
}

}  // namespace
}  // namespace tunnelkit::cloudflare::quic::detail
