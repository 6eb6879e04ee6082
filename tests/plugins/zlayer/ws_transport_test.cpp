// libwebsockets transport over real loopback sockets: ws and wss, message sizes, fragmentation,
// flow control with a large transfer through WsStream, certificate verification failures.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <random>

#include "process.hpp"
#include "test_certs.hpp"
#include "transport/ws_loop.hpp"
#include "transport/ws_stream.hpp"

namespace tunnelkit::zlayer::transport {
namespace {

namespace asio = boost::asio;

// Runs `body` on a fresh io_context with an echo server; fails the test after `limit`.
struct EchoFixture {
  asio::io_context io;
  WsLoop server{io};
  WsLoop client{io};
  std::vector<std::shared_ptr<WsConnection>> accepted;

  bool Start(const WsServerOptions& server_options, const WsClientOptions& client_options) {
    std::string error;
    const bool ok = server.Start(
        server_options,
        [this](std::shared_ptr<WsConnection> conn) {
          accepted.push_back(conn);
          asio::co_spawn(
              io,
              [conn]() -> asio::awaitable<void> {
                while (auto message = co_await conn->Receive()) {
                  if (!co_await conn->Send(*message)) break;
                }
              },
              asio::detached);
        },
        std::nullopt, error);
    EXPECT_TRUE(ok) << error;
    const bool client_ok = client.Start(std::nullopt, nullptr, client_options, error);
    EXPECT_TRUE(client_ok) << error;
    return ok && client_ok;
  }

  void Run(std::function<asio::awaitable<void>()> body, std::chrono::seconds limit) {
    bool done = false;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          co_await body();
          done = true;
          client.Stop();
          server.Stop();
          io.stop();
        },
        [](std::exception_ptr e) {
          if (e) std::rethrow_exception(e);
        });
    asio::steady_timer guard(io, limit);
    guard.async_wait([&](boost::system::error_code ec) {
      if (!ec) io.stop();
    });
    io.run();
    client.Stop();
    server.Stop();
    EXPECT_TRUE(done) << "timed out";
  }

  WsUrl Url(bool tls, const std::string& host = "127.0.0.1") const {
    WsUrl url;
    url.tls = tls;
    url.host = host;
    url.port = server.listen_port();
    url.path = "/tunnel/v1";
    return url;
  }
};

std::vector<std::uint8_t> Pattern(std::size_t n, unsigned seed) {
  std::vector<std::uint8_t> bytes(n);
  std::mt19937 rng(seed);
  for (auto& b : bytes) b = static_cast<std::uint8_t>(rng());
  return bytes;
}

// By value: a coroutine must not keep references to its caller's temporaries.
asio::awaitable<void> EchoSizes(EchoFixture& f, WsUrl url) {
  std::string error;
  auto conn = co_await f.client.Connect(url, error);
  EXPECT_TRUE(conn) << error;
  if (!conn) co_return;
  for (std::size_t size :
       {std::size_t{1}, std::size_t{1000}, std::size_t{65537}, std::size_t{200000}}) {
    const auto payload = Pattern(size, static_cast<unsigned>(size));
    EXPECT_TRUE(co_await conn->Send(payload));
    auto echoed = co_await conn->Receive();
    EXPECT_TRUE(echoed) << conn->close_reason();
    if (!echoed) co_return;
    EXPECT_EQ(*echoed, payload) << "size " << size;
  }
  EXPECT_EQ(f.accepted.size(), 1u);
  if (!f.accepted.empty()) {
    EXPECT_EQ(f.accepted[0]->path(), "/tunnel/v1");
    EXPECT_FALSE(f.accepted[0]->peer().empty());
  }
  conn->Close();
}

TEST(ZlayerWsTransport, PlainEchoOfSeveralSizes) {
  EchoFixture f;
  ASSERT_TRUE(f.Start(WsServerOptions{"127.0.0.1", 0, "", ""}, WsClientOptions{}));
  ASSERT_GT(f.server.listen_port(), 0);
  f.Run([&]() { return EchoSizes(f, f.Url(false)); }, std::chrono::seconds(20));
}

TEST(ZlayerWsTransport, TlsEchoVerifiedWithCaFile) {
  test::TestCert cert;
  ASSERT_TRUE(cert.ok);
  EchoFixture f;
  ASSERT_TRUE(f.Start(WsServerOptions{"127.0.0.1", 0, cert.cert, cert.key},
                      WsClientOptions{cert.cert, false}));
  f.Run([&]() { return EchoSizes(f, f.Url(true)); }, std::chrono::seconds(20));
}

TEST(ZlayerWsTransport, TlsRefusesUnknownCertificateUnlessSkipped) {
  test::TestCert cert;
  test::TestCert other;
  ASSERT_TRUE(cert.ok && other.ok);
  {
    EchoFixture f;
    ASSERT_TRUE(f.Start(WsServerOptions{"127.0.0.1", 0, cert.cert, cert.key},
                        WsClientOptions{other.cert, false}));
    f.Run(
        [&]() -> asio::awaitable<void> {
          std::string error;
          const WsUrl url = f.Url(true);
          auto conn = co_await f.client.Connect(url, error);
          EXPECT_FALSE(conn);
          EXPECT_FALSE(error.empty());
        },
        std::chrono::seconds(20));
  }
  {
    EchoFixture f;
    ASSERT_TRUE(
        f.Start(WsServerOptions{"127.0.0.1", 0, cert.cert, cert.key}, WsClientOptions{"", true}));
    f.Run([&]() { return EchoSizes(f, f.Url(true)); }, std::chrono::seconds(20));
  }
}

TEST(ZlayerWsTransport, ConnectToClosedPortFails) {
  EchoFixture f;
  ASSERT_TRUE(f.Start(WsServerOptions{"127.0.0.1", 0, "", ""}, WsClientOptions{}));
  WsUrl url = f.Url(false);
  url.port = tunnelkit::test::FreeTcpPort();
  f.Run(
      [&]() -> asio::awaitable<void> {
        std::string error;
        auto conn = co_await f.client.Connect(url, error);
        EXPECT_FALSE(conn);
        EXPECT_FALSE(error.empty());
      },
      std::chrono::seconds(20));
}

TEST(ZlayerWsTransport, BadCertificateFileIsAStartError) {
  asio::io_context io;
  WsLoop loop(io);
  std::string error;
  EXPECT_FALSE(
      loop.Start(WsServerOptions{"127.0.0.1", 0, "/nonexistent/cert.pem", "/nonexistent/key.pem"},
                 nullptr, std::nullopt, error));
  EXPECT_NE(error.find("certificate"), std::string::npos) << error;
}

// 8 MiB one way through WsStream with a slow reader (flow control), then half-close both ways.
TEST(ZlayerWsTransport, StreamCarriesLargeBodyWithHalfClose) {
  asio::io_context io;
  WsLoop server(io);
  WsLoop client(io);
  const auto body = Pattern(8 << 20, 7);
  std::string received;
  bool server_done = false;
  std::string error;
  ASSERT_TRUE(server.Start(
      WsServerOptions{"127.0.0.1", 0, "", ""},
      [&](std::shared_ptr<WsConnection> conn) {
        asio::co_spawn(
            io,
            [&, conn]() -> asio::awaitable<void> {
              WsStream stream(io.get_executor(), conn, "server side");
              std::vector<char> buf(50000);
              for (;;) {
                auto r = co_await stream.ReadSome(asio::buffer(buf));
                if (r.ec) {
                  EXPECT_EQ(r.ec, asio::error::eof);
                  break;
                }
                received.append(buf.data(), r.bytes);
                if (received.size() < 1000000) {  // slow at first: the writer must wait
                  asio::steady_timer t(io, std::chrono::milliseconds(1));
                  co_await t.async_wait(asio::use_awaitable);
                }
              }
              const std::string reply = "got " + std::to_string(received.size());
              auto w = co_await stream.Write(asio::buffer(reply));
              EXPECT_FALSE(w.ec);
              EXPECT_FALSE(co_await stream.ShutdownWrite());
              server_done = true;
            },
            asio::detached);
      },
      std::nullopt, error))
      << error;
  ASSERT_TRUE(client.Start(std::nullopt, nullptr, WsClientOptions{}, error)) << error;
  bool done = false;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        WsUrl url{false, "127.0.0.1", server.listen_port(), "/data"};
        auto conn = co_await client.Connect(url, error);
        EXPECT_TRUE(conn) << error;
        if (!conn) co_return;
        WsStream stream(io.get_executor(), conn, "client side");
        auto w = co_await stream.Write(asio::buffer(body));
        EXPECT_FALSE(w.ec);
        EXPECT_EQ(w.bytes, body.size());
        EXPECT_FALSE(co_await stream.ShutdownWrite());
        std::string reply;
        char buf[100];
        for (;;) {
          auto r = co_await stream.ReadSome(asio::buffer(buf));
          if (r.ec) {
            EXPECT_EQ(r.ec, asio::error::eof);
            break;
          }
          reply.append(buf, r.bytes);
        }
        EXPECT_EQ(reply, "got " + std::to_string(body.size()));
        done = true;
        io.stop();
      },
      asio::detached);
  asio::steady_timer guard(io, std::chrono::seconds(60));
  guard.async_wait([&](boost::system::error_code ec) {
    if (!ec) io.stop();
  });
  io.run();
  client.Stop();
  server.Stop();
  EXPECT_TRUE(done);
  EXPECT_TRUE(server_done);
  EXPECT_EQ(tunnelkit::test::Sha256Hex(received),
            tunnelkit::test::Sha256Hex(std::string(body.begin(), body.end())));
}

}  // namespace
}  // namespace tunnelkit::zlayer::transport
