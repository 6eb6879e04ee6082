// The QUIC layer's bulk-transfer rules: packet sizes on a loopback path (observed on the wire
// through a UDP relay) and write-behind (a Write returns before its data is in packets).
#include <gtest/gtest.h>

#include <algorithm>

#include "quic_test_env.hpp"

namespace tunnelkit::cloudflare::quic::test {
namespace {

// Forwards datagrams between one client and a server, recording each datagram's size.
class UdpRelay {
 public:
  UdpRelay(asio::io_context& io, udp::endpoint server)
      : front_(io, Loopback()), back_(io, Loopback()), server_(server) {
    const asio::socket_base::receive_buffer_size big(4 << 20);
    front_.set_option(big);
    back_.set_option(big);
    asio::co_spawn(io, Pump(true), asio::detached);
    asio::co_spawn(io, Pump(false), asio::detached);
  }
  udp::endpoint endpoint() const { return front_.local_endpoint(); }

  std::vector<std::size_t> to_server;
  std::vector<std::size_t> to_client;

 private:
  asio::awaitable<void> Pump(bool from_client) {
    std::vector<std::uint8_t> buf(65536);
    for (;;) {
      udp::endpoint from;
      auto& in = from_client ? front_ : back_;
      std::size_t n = co_await in.async_receive_from(asio::buffer(buf), from, asio::use_awaitable);
      if (from_client) {
        client_ = from;
        to_server.push_back(n);
        co_await back_.async_send_to(asio::buffer(buf.data(), n), server_, asio::use_awaitable);
      } else {
        to_client.push_back(n);
        co_await front_.async_send_to(asio::buffer(buf.data(), n), client_, asio::use_awaitable);
      }
    }
  }

  udp::socket front_;
  udp::socket back_;
  udp::endpoint server_;
  udp::endpoint client_;
};

std::size_t Largest(const std::vector<std::size_t>& sizes) {
  return sizes.empty() ? 0 : *std::max_element(sizes.begin(), sizes.end());
}

// Echoes `payload` through a new stream and checks it came back whole.
asio::awaitable<void> EchoThrough(QuicConnection& conn, asio::io_context& io,
                                  const std::string& payload) {
  auto stream = co_await conn.OpenStream();
  asio::co_spawn(io, WriteAll(*stream, payload), asio::detached);
  std::string echoed = co_await ReadAll(*stream);
  EXPECT_EQ(tunnelkit::test::Sha256Hex(echoed), tunnelkit::test::Sha256Hex(payload));
}

TEST(QuicBulk, LoopbackClientSendsPacketsOfTheLoopbackMtuAfterTheHandshake) {
  asio::io_context io;
  QuicServer server(io.get_executor(), Loopback(), ServerOptions(),
                    [](std::shared_ptr<QuicConnection> c) { ServeEcho(c); });
  UdpRelay relay(io, server.local_endpoint());
  RunWithDeadline(io, [&]() -> asio::awaitable<void> {
    auto conn = co_await QuicClient::Connect(io.get_executor(), relay.endpoint(), ClientOptions());
    co_await EchoThrough(*conn, io, Pattern(2 * 1024 * 1024, 11));
    // The handshake stays within max_udp_payload (the Initial is padded to at least 1200).
    EXPECT_FALSE(relay.to_server.empty());
    if (!relay.to_server.empty()) {
      EXPECT_GE(relay.to_server.front(), 1200u);
      EXPECT_LE(relay.to_server.front(), 1452u);
    }
    // Then the client uses the loopback device's size; the server (an edge) keeps 1452.
    EXPECT_GT(conn->MaxUdpPayload(), 1452u);
    EXPECT_GT(Largest(relay.to_server), 1452u);
    EXPECT_LE(Largest(relay.to_server), 65507u);
    EXPECT_LE(Largest(relay.to_client), 1452u);
    conn->Close(0, "done");
  });
}

TEST(QuicBulk, WithoutLoopbackMtuPacketsStayWithinMaxUdpPayload) {
  asio::io_context io;
  QuicServer server(io.get_executor(), Loopback(), ServerOptions(),
                    [](std::shared_ptr<QuicConnection> c) { ServeEcho(c); });
  UdpRelay relay(io, server.local_endpoint());
  auto options = ClientOptions();
  options.transport.loopback_mtu = false;
  RunWithDeadline(io, [&]() -> asio::awaitable<void> {
    auto conn = co_await QuicClient::Connect(io.get_executor(), relay.endpoint(), options);
    co_await EchoThrough(*conn, io, Pattern(1024 * 1024, 12));
    EXPECT_LE(conn->MaxUdpPayload(), 1452u);
    EXPECT_LE(Largest(relay.to_server), 1452u);
    EXPECT_LE(Largest(relay.to_client), 1452u);
    conn->Close(0, "done");
  });
}

TEST(QuicBulk, WriteReturnsBeforeAFlowBlockedPeerGrantsCredit) {
  asio::io_context io;
  auto server_options = ServerOptions();
  server_options.transport.stream_receive_window = 16 * 1024;
  bool release = false;
  std::string received;
  bool received_all = false;
  QuicServer server(io.get_executor(), Loopback(), server_options,
                    [&](std::shared_ptr<QuicConnection> c) {
                      c->SetStreamHandler([&](std::shared_ptr<QuicStream> s) {
                        asio::co_spawn(
                            io,
                            [&, s]() -> asio::awaitable<void> {
                              while (!release) co_await Sleep(5ms);  // not reading yet
                              received = co_await ReadAll(*s);
                              received_all = true;
                            },
                            asio::detached);
                      });
                    });
  RunWithDeadline(io, [&]() -> asio::awaitable<void> {
    auto conn =
        co_await QuicClient::Connect(io.get_executor(), server.local_endpoint(), ClientOptions());
    auto stream = co_await conn->OpenStream();
    const std::string payload = Pattern(64 * 1024, 13);
    bool returned = false;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          co_await WriteAll(*stream, payload, payload.size());
          returned = true;
        },
        asio::detached);
    // The peer's window takes 16 KiB; the rest waits in the stream, not in the writer.
    for (int i = 0; i < 200 && !returned; ++i) co_await Sleep(5ms);
    EXPECT_TRUE(returned) << "Write waited for the peer's flow-control credit";
    release = true;
    for (int i = 0; i < 1000 && !received_all; ++i) co_await Sleep(5ms);
    EXPECT_TRUE(received_all);
    EXPECT_EQ(tunnelkit::test::Sha256Hex(received), tunnelkit::test::Sha256Hex(payload));
    conn->Close(0, "done");
  });
}

TEST(QuicBulk, ReadsOfAnySizeWhileDataArrivesKeepTheBytesInOrder) {
  // Data for a waiting reader goes straight into its buffer, the rest of a packet into the
  // stream's queue; reads of 1, 1000 and 70000 bytes must see one ordered byte stream.
  asio::io_context io;
  const std::string payload = Pattern(3 * 1024 * 1024 + 17, 14);
  std::string received;
  bool done = false;
  QuicServer server(
      io.get_executor(), Loopback(), ServerOptions(), [&](std::shared_ptr<QuicConnection> c) {
        c->SetStreamHandler([&](std::shared_ptr<QuicStream> s) {
          asio::co_spawn(
              io,
              [&, s]() -> asio::awaitable<void> {
                const std::size_t sizes[] = {1, 1000, 70000};
                std::vector<char> buf(70000);
                for (std::size_t i = 0;; ++i) {
                  auto r = co_await s->ReadSome(asio::buffer(buf.data(), sizes[i % 3]));
                  if (r.ec) break;
                  received.append(buf.data(), r.bytes);
                }
                done = true;
              },
              asio::detached);
        });
      });
  RunWithDeadline(io, [&]() -> asio::awaitable<void> {
    auto conn =
        co_await QuicClient::Connect(io.get_executor(), server.local_endpoint(), ClientOptions());
    auto stream = co_await conn->OpenStream();
    co_await WriteAll(*stream, payload, 256 * 1024);
    for (int i = 0; i < 2000 && !done; ++i) co_await Sleep(5ms);
    EXPECT_TRUE(done);
    EXPECT_EQ(received.size(), payload.size());
    EXPECT_EQ(tunnelkit::test::Sha256Hex(received), tunnelkit::test::Sha256Hex(payload));
    conn->Close(0, "done");
  });
}

}  // namespace
}  // namespace tunnelkit::cloudflare::quic::test
