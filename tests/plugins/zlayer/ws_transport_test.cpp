// libwebsockets transport (the control channel) over real loopback sockets: ws and wss, message
// sizes, fragmentation, certificate verification failures. The data plane: data_plane_test.cpp.
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

}  // namespace
}  // namespace tunnelkit::zlayer::transport
