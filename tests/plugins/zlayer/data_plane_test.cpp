// The data plane (v2) and the server's one port over real loopback sockets: Beast data
// WebSockets through the FrontDoor, ws and wss, 50 MiB each way with half-close; control
// upgrades without the data marker handed to libwebsockets (plain fd and TLS relay).
#include <gtest/gtest.h>
#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <random>

#include "process.hpp"
#include "test_certs.hpp"
#include "transport/data_socket.hpp"
#include "transport/data_splice.hpp"
#include "transport/data_stream.hpp"
#include "transport/front_door.hpp"
#include "transport/ws_loop.hpp"
#include "tunnelkit/stream/tls_context.hpp"

namespace tunnelkit::zlayer::transport {
namespace {

namespace asio = boost::asio;

std::shared_ptr<spdlog::logger> QuietLogger() {
  return std::make_shared<spdlog::logger>("data-plane-test",
                                          std::make_shared<spdlog::sinks::null_sink_mt>());
}

std::string Pattern(std::size_t n, unsigned seed) {
  std::string out(n, '\0');
  std::mt19937 gen(seed);
  for (std::size_t i = 0; i < n; i += 4) {
    const auto v = gen();
    for (std::size_t j = 0; j < 4 && i + j < n; ++j) out[i + j] = static_cast<char>(v >> (8 * j));
  }
  return out;
}

// Reads `stream` to its end (eof); false on any other error.
asio::awaitable<bool> ReadAll(Stream& stream, std::string& out) {
  std::vector<char> buf(100000);  // not a multiple of the frame size on purpose
  for (;;) {
    const auto r = co_await stream.ReadSome(asio::buffer(buf));
    if (r.ec == asio::error::eof) co_return true;
    if (r.ec) co_return false;
    out.append(buf.data(), r.bytes);
  }
}

void RunFor(asio::io_context& io, std::chrono::seconds limit, const bool& done) {
  asio::steady_timer guard(io, limit);
  guard.async_wait([&](boost::system::error_code ec) {
    if (!ec) io.stop();
  });
  io.run();
  EXPECT_TRUE(done) << "timed out";
}

// The server side echoes everything (Splice-like, through DataStream) and half-closes after the
// client's end of writes; the client writes 50 MiB, half-closes, and reads the echo to its end.
void MoveFiftyMiBEachWay(bool tls) {
  asio::io_context io;
  test::TestCert cert;
  ASSERT_TRUE(!tls || cert.ok);
  FrontDoor door(io, QuietLogger());
  FrontDoorOptions options;
  options.host = "127.0.0.1";
  if (tls) {
    options.tls_cert = cert.cert;
    options.tls_key = cert.key;
  }
  std::string error;
  std::string server_got;
  bool server_clean = false;
  int control_handoffs = 0;
  ASSERT_TRUE(door.Start(
      options,
      [&](std::shared_ptr<DataSocket> data, DataLinkAdmission) {
        asio::co_spawn(
            io,
            [&, data]() -> asio::awaitable<void> {
              DataStream stream(data, "server side");
              std::vector<char> buf(65536);
              for (;;) {
                const auto r = co_await stream.ReadSome(asio::buffer(buf));
                if (r.ec) {
                  EXPECT_EQ(r.ec, asio::error::eof);
                  break;
                }
                server_got.append(buf.data(), r.bytes);
                const auto w = co_await stream.Write(asio::buffer(buf.data(), r.bytes));
                EXPECT_FALSE(w.ec);
                if (w.ec) co_return;
              }
              EXPECT_FALSE(co_await stream.ShutdownWrite());
              server_clean = stream.finished_cleanly();
              co_await data->Finish();
            },
            asio::detached);
      },
      [&](int fd, std::string, std::string) {
        ++control_handoffs;
        ::close(fd);
      },
      error))
      << error;

  const std::string body = Pattern(50 << 20, tls ? 11 : 7);
  std::string echoed;
  bool done = false;
  std::shared_ptr<asio::ssl::context> client_tls;
  if (tls) client_tls = MakeTlsClientContext({cert.cert, false, "", "", {}});
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        const WsUrl url{tls, "127.0.0.1", door.port(), "/tunnel/v1"};
        auto data =
            co_await DialDataSocket(io.get_executor(), url, client_tls.get(),
                                    std::chrono::seconds(10), DataKind::kPerConnection, error);
        EXPECT_TRUE(data) << error;
        if (!data) {
          io.stop();
          co_return;
        }
        DataStream stream(data, "client side");
        bool writer_done = false;
        asio::co_spawn(
            io,
            [&]() -> asio::awaitable<void> {
              // Uneven writes: some larger than one frame, some tiny.
              std::size_t offset = 0;
              std::size_t step = 1;
              while (offset < body.size()) {
                const std::size_t n = std::min(body.size() - offset, step);
                const auto w = co_await stream.Write(asio::buffer(body.data() + offset, n));
                EXPECT_FALSE(w.ec);
                if (w.ec) co_return;
                offset += n;
                step = step >= (1u << 20) ? 3 : step * 7;
              }
              EXPECT_FALSE(co_await stream.ShutdownWrite());
              writer_done = true;
            },
            asio::detached);
        EXPECT_TRUE(co_await ReadAll(stream, echoed));
        EXPECT_TRUE(writer_done);
        EXPECT_TRUE(stream.finished_cleanly());
        done = true;
        io.stop();
      },
      asio::detached);
  RunFor(io, std::chrono::seconds(90), done);
  EXPECT_EQ(control_handoffs, 0);
  EXPECT_TRUE(server_clean);
  EXPECT_EQ(server_got.size(), body.size());
  EXPECT_EQ(echoed.size(), body.size());
  const auto want = tunnelkit::test::Sha256Hex(body);
  EXPECT_EQ(tunnelkit::test::Sha256Hex(server_got), want);
  EXPECT_EQ(tunnelkit::test::Sha256Hex(echoed), want);
}

TEST(ZlayerDataPlane, PlainMovesFiftyMiBEachWay) {
  MoveFiftyMiBEachWay(false);
}

TEST(ZlayerDataPlane, TlsMovesFiftyMiBEachWay) {
  MoveFiftyMiBEachWay(true);
}

TEST(ZlayerDataPlane, TlsDialRefusesAnUnknownCertificate) {
  asio::io_context io;
  test::TestCert cert;
  ASSERT_TRUE(cert.ok);
  FrontDoor door(io, QuietLogger());
  FrontDoorOptions options;
  options.host = "127.0.0.1";
  options.tls_cert = cert.cert;
  options.tls_key = cert.key;
  std::string error;
  bool accepted = false;
  ASSERT_TRUE(door.Start(
      options, [&](std::shared_ptr<DataSocket>, DataLinkAdmission) { accepted = true; },
      [](int fd, std::string, std::string) { ::close(fd); }, error))
      << error;
  auto system_roots = MakeTlsClientContext({});
  bool done = false;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        const WsUrl url{true, "127.0.0.1", door.port(), "/"};
        auto data =
            co_await DialDataSocket(io.get_executor(), url, system_roots.get(),
                                    std::chrono::seconds(10), DataKind::kPerConnection, error);
        EXPECT_FALSE(data);
        EXPECT_NE(error.find("certificate"), std::string::npos) << error;
        done = true;
        io.stop();
      },
      asio::detached);
  RunFor(io, std::chrono::seconds(20), done);
  EXPECT_FALSE(accepted);
}

// A WebSocket upgrade without the data marker is a control connection: the FrontDoor hands it
// to libwebsockets (adopting the fd, or a socketpair end behind a TLS relay), which serves it.
void ControlUpgradeReachesLibwebsockets(bool tls) {
  asio::io_context io;
  test::TestCert cert;
  ASSERT_TRUE(!tls || cert.ok);
  WsLoop lws_server(io);
  WsLoop lws_client(io);
  FrontDoor door(io, QuietLogger());
  std::string error;
  std::string accepted_peer;
  WsServerOptions adopt;
  adopt.adopt_only = true;
  ASSERT_TRUE(lws_server.Start(
      adopt,
      [&](std::shared_ptr<WsConnection> conn) {
        accepted_peer = conn->peer();
        asio::co_spawn(
            io,
            [conn]() -> asio::awaitable<void> {
              while (auto message = co_await conn->Receive()) {
                message->insert(message->begin(), 'E');
                co_await conn->Send(*message);
              }
            },
            asio::detached);
      },
      std::nullopt, error))
      << error;
  WsClientOptions client_options;
  client_options.tls_ca = tls ? cert.cert : "";
  ASSERT_TRUE(lws_client.Start(std::nullopt, nullptr, client_options, error)) << error;
  FrontDoorOptions options;
  options.host = "127.0.0.1";
  if (tls) {
    options.tls_cert = cert.cert;
    options.tls_key = cert.key;
  }
  bool data_seen = false;
  ASSERT_TRUE(door.Start(
      options, [&](std::shared_ptr<DataSocket>, DataLinkAdmission) { data_seen = true; },
      [&](int fd, std::string head, std::string peer) {
        lws_server.Adopt(fd, std::move(head), std::move(peer));
      },
      error))
      << error;
  bool done = false;
  std::string local_address;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        const WsUrl url{tls, "127.0.0.1", door.port(), "/tunnel/v1"};
        auto conn = co_await lws_client.Connect(url, error);
        EXPECT_TRUE(conn) << error;
        if (!conn) {
          io.stop();
          co_return;
        }
        local_address = conn->peer();
        for (std::size_t size : {1u, 100u, 5000u, 70000u}) {
          const std::string text = Pattern(size, static_cast<unsigned>(size));
          const std::vector<std::uint8_t> payload(text.begin(), text.end());
          EXPECT_TRUE(co_await conn->Send(payload));
          auto reply = co_await conn->Receive();
          EXPECT_TRUE(reply);
          if (!reply) break;
          EXPECT_EQ(reply->size(), size + 1);
          EXPECT_EQ(std::string(reply->begin() + 1, reply->end()), text);
        }
        conn->Close();
        done = true;
        io.stop();
      },
      asio::detached);
  RunFor(io, std::chrono::seconds(20), done);
  lws_client.Stop();
  lws_server.Stop();
  EXPECT_FALSE(data_seen);
  // The peer named in the server's logs is the real client address, also through the relay.
  EXPECT_EQ(accepted_peer.rfind("127.0.0.1:", 0), 0u) << accepted_peer;
}

TEST(ZlayerDataPlane, PlainControlUpgradeIsAdoptedByLibwebsockets) {
  ControlUpgradeReachesLibwebsockets(false);
}

TEST(ZlayerDataPlane, TlsControlUpgradeIsRelayedToLibwebsockets) {
  ControlUpgradeReachesLibwebsockets(true);
}

// A connected loopback TCP pair: {ours, theirs}.
asio::awaitable<std::pair<asio::ip::tcp::socket, asio::ip::tcp::socket>> TcpPair() {
  using asio::ip::tcp;
  auto ex = co_await asio::this_coro::executor;
  tcp::acceptor acceptor(ex, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  tcp::socket client(ex);
  co_await client.async_connect(acceptor.local_endpoint(), asio::use_awaitable);
  tcp::socket server = co_await acceptor.async_accept(asio::use_awaitable);
  co_return std::make_pair(std::move(server), std::move(client));
}

// The server's zero-copy direction writes WebSocket frame headers by hand: Beast (the agent
// side here reads through DataStream/Beast, not the zero-copy parser) must accept every length
// form, and the bytes and the half-close must come through; the other direction too.
TEST(ZlayerDataSplice, ServerZeroCopyFramesAreValidWebSocket) {
  asio::io_context io;
  FrontDoor door(io, QuietLogger());
  FrontDoorOptions options;
  options.host = "127.0.0.1";
  std::string error;
  std::optional<asio::ip::tcp::socket> public_client;  // plays the public client
  DataSpliceResult server_result;
  bool server_done = false;
  ASSERT_TRUE(door.Start(
      options,
      [&](std::shared_ptr<DataSocket> data, DataLinkAdmission) {
        asio::co_spawn(
            io,
            [&, data]() -> asio::awaitable<void> {
              auto [ours, theirs] = co_await TcpPair();
              public_client.emplace(std::move(theirs));
              TcpStream public_side(std::move(ours));
              DataStream stream(data, "server side");
              server_result = co_await SpliceData(public_side, stream, DataSide::kServer);
              server_done = true;
            },
            asio::detached);
      },
      [](int fd, std::string, std::string) { ::close(fd); }, error))
      << error;
  // 0..125, 126..65535 and longer payloads (+1 kind byte), then bulk.
  std::string upstream;
  for (std::size_t size : {1u, 124u, 125u, 126u, 1000u, 65534u, 65535u, 65536u, 300000u}) {
    upstream += Pattern(size, static_cast<unsigned>(size));
  }
  upstream += Pattern(8 << 20, 5);
  const std::string downstream = Pattern(3 << 20, 6);
  std::string got_up;
  std::string got_down;
  bool done = false;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        const WsUrl url{false, "127.0.0.1", door.port(), "/"};
        auto data =
            co_await DialDataSocket(io.get_executor(), url, nullptr, std::chrono::seconds(10),
                                    DataKind::kPerConnection, error);
        EXPECT_TRUE(data) << error;
        if (!data) {
          io.stop();
          co_return;
        }
        DataStream agent(data, "agent side");
        while (!public_client) {
          asio::steady_timer t(io, std::chrono::milliseconds(5));
          co_await t.async_wait(asio::use_awaitable);
        }
        auto& pub = *public_client;
        asio::co_spawn(
            io,
            [&]() -> asio::awaitable<void> {
              // Piece by piece, so the server's splices see separate bursts of these sizes.
              std::size_t offset = 0;
              for (std::size_t size :
                   {1u, 124u, 125u, 126u, 1000u, 65534u, 65535u, 65536u, 300000u}) {
                co_await asio::async_write(pub, asio::buffer(upstream.data() + offset, size),
                                           asio::use_awaitable);
                offset += size;
                asio::steady_timer t(io, std::chrono::milliseconds(20));
                co_await t.async_wait(asio::use_awaitable);
              }
              co_await asio::async_write(
                  pub, asio::buffer(upstream.data() + offset, upstream.size() - offset),
                  asio::use_awaitable);
              pub.shutdown(asio::ip::tcp::socket::shutdown_send);
            },
            asio::detached);
        asio::co_spawn(
            io,
            [&]() -> asio::awaitable<void> {
              EXPECT_FALSE((co_await agent.Write(asio::buffer(downstream))).ec);
              EXPECT_FALSE(co_await agent.ShutdownWrite());
            },
            asio::detached);
        EXPECT_TRUE(co_await ReadAll(agent, got_up));
        std::vector<char> buf(65536);
        for (;;) {
          boost::system::error_code ec;
          const auto n = co_await pub.async_read_some(
              asio::buffer(buf), asio::redirect_error(asio::use_awaitable, ec));
          if (ec) {
            EXPECT_EQ(ec, asio::error::eof);
            break;
          }
          got_down.append(buf.data(), n);
        }
        while (!server_done) {
          asio::steady_timer t(io, std::chrono::milliseconds(5));
          co_await t.async_wait(asio::use_awaitable);
        }
        done = true;
        io.stop();
      },
      asio::detached);
  RunFor(io, std::chrono::seconds(60), done);
  EXPECT_EQ(got_up.size(), upstream.size());
  EXPECT_EQ(tunnelkit::test::Sha256Hex(got_up), tunnelkit::test::Sha256Hex(upstream));
  EXPECT_EQ(tunnelkit::test::Sha256Hex(got_down), tunnelkit::test::Sha256Hex(downstream));
  EXPECT_FALSE(server_result.totals.ec) << server_result.totals.ec.message();
  EXPECT_TRUE(server_result.clean);
  EXPECT_EQ(server_result.totals.a_to_b, upstream.size());
}

// The agent's zero-copy reader parses the server's frames itself: a frame it does not expect
// (here a text frame) ends that connection with an error and resets the local side; nothing
// else happens.
TEST(ZlayerDataSplice, AgentZeroCopyReaderRefusesAMalformedFrame) {
  asio::io_context io;
  FrontDoor door(io, QuietLogger());
  FrontDoorOptions options;
  options.host = "127.0.0.1";
  std::string error;
  std::shared_ptr<DataSocket> server_data;
  ASSERT_TRUE(door.Start(
      options,
      [&](std::shared_ptr<DataSocket> data, DataLinkAdmission) {
        server_data = data;
        asio::co_spawn(
            io,
            [data]() -> asio::awaitable<void> {
              // One good data frame, then a text frame.
              static constexpr std::uint8_t kFrames[] = {0x82, 0x03, 0x00, 'h', 'i',
                                                         0x81, 0x03, 'a',  'b', 'c'};
              co_await asio::async_write(*data->plain_socket(), asio::buffer(kFrames),
                                         asio::use_awaitable);
            },
            asio::detached);
      },
      [](int fd, std::string, std::string) { ::close(fd); }, error))
      << error;
  bool done = false;
  DataSpliceResult result;
  std::string local_got;
  boost::system::error_code local_end;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        const WsUrl url{false, "127.0.0.1", door.port(), "/"};
        auto data =
            co_await DialDataSocket(io.get_executor(), url, nullptr, std::chrono::seconds(10),
                                    DataKind::kPerConnection, error);
        EXPECT_TRUE(data) << error;
        if (!data) {
          io.stop();
          co_return;
        }
        auto [ours, theirs] = co_await TcpPair();
        TcpStream local(std::move(ours));
        DataStream stream(data, "agent side");
        asio::co_spawn(
            io,
            [&, s = std::move(theirs)]() mutable -> asio::awaitable<void> {
              std::array<char, 64> buf;
              for (;;) {
                boost::system::error_code ec;
                const auto n = co_await s.async_read_some(
                    asio::buffer(buf), asio::redirect_error(asio::use_awaitable, ec));
                if (ec) {
                  local_end = ec;
                  co_return;
                }
                local_got.append(buf.data(), n);
              }
            },
            asio::detached);
        result = co_await SpliceData(local, stream, DataSide::kAgent);
        asio::steady_timer t(io, std::chrono::milliseconds(100));
        co_await t.async_wait(asio::use_awaitable);
        done = true;
        io.stop();
      },
      asio::detached);
  RunFor(io, std::chrono::seconds(20), done);
  EXPECT_EQ(result.totals.ec, asio::error::invalid_argument) << result.totals.ec.message();
  EXPECT_FALSE(result.clean);
  EXPECT_EQ(local_got, "hi");
  EXPECT_TRUE(local_end == asio::error::connection_reset || local_end == asio::error::eof)
      << local_end.message();
}

}  // namespace
}  // namespace tunnelkit::zlayer::transport
