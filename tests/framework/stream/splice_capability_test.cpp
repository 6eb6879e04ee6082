// Stream capability queries (plain_tcp_socket, plain_unix_socket, framed) that Splice and
// StreamRef ask instead of dynamic_cast; Splice's linger; TLS contexts limited to TLS 1.3.
// Real sockets on 127.0.0.1 and real TLS.
#include <openssl/ssl.h>

#include <chrono>
#include <memory>
#include <string>

#include <gtest/gtest.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/local/connect_pair.hpp>
#include <boost/asio/steady_timer.hpp>

#include "test_util.hpp"
#include "tunnelkit/stream/socket_stream.hpp"
#include "tunnelkit/stream/splice.hpp"
#include "tunnelkit/stream/tls_context.hpp"
#include "tunnelkit/stream/tls_stream.hpp"

namespace tunnelkit {
namespace {

namespace asio = boost::asio;
using asio::awaitable;
using boost::system::error_code;
using test::RunFor;

TEST(StreamCapabilityTest, PlainSocketsSayWhatTheyAreAndWrappersDoNot) {
  asio::io_context io;
  auto [c, s] = test::TcpPair(io);
  TcpStream tcp(std::move(c));
  EXPECT_EQ(tcp.plain_tcp_socket(), &tcp.socket());
  EXPECT_EQ(tcp.plain_unix_socket(), nullptr);
  EXPECT_EQ(tcp.framed(), nullptr);

  asio::local::stream_protocol::socket u1(io), u2(io);
  asio::local::connect_pair(u1, u2);
  UnixStream unix_stream(std::move(u1));
  EXPECT_EQ(unix_stream.plain_unix_socket(), &unix_stream.socket());
  EXPECT_EQ(unix_stream.plain_tcp_socket(), nullptr);

  // TLS over TCP is not plain TCP: bytes written to its socket would bypass the records.
  asio::ssl::context context(asio::ssl::context::tls_client);
  TlsStream tls(std::move(s), context, TlsStream::Role::kClient, "localhost");
  EXPECT_EQ(tls.plain_tcp_socket(), nullptr);
  EXPECT_EQ(tls.framed(), nullptr);
}

// An HTTP response relayed with a linger: once b (the tunnel side) has finished sending, a
// (the public client) gets `linger` to finish too, then both are reset. Without the linger the
// splice waits for the client for ever.
TEST(SpliceTest, LingerResetsTheSideThatStaysOpenAfterTheOtherFinished) {
  asio::io_context io;
  auto [c1, s1] = test::TcpPair(io);
  auto [c2, s2] = test::TcpPair(io);
  TcpStream client(std::move(c1)), left(std::move(s1)), right(std::move(c2)), server(std::move(s2));
  const auto linger = std::chrono::milliseconds(200);
  RunFor(
      io,
      [&]() -> awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        asio::co_spawn(
            ex,
            [&]() -> awaitable<void> {
              static const std::string response = "response";
              co_await server.Write(asio::buffer(response));
              co_await server.ShutdownWrite();
            },
            asio::detached);
        const auto start = std::chrono::steady_clock::now();
        SpliceOptions options;
        options.linger = linger;
        SpliceResult result = co_await Splice(left, right, options);
        EXPECT_GE(std::chrono::steady_clock::now() - start, linger);
        EXPECT_EQ(result.b_to_a, 8u);
        // The client got the response and its end, then the reset (it never closed its side).
        std::string got;
        char buf[64];
        IoResult r;
        while (!(r = co_await client.ReadSome(asio::buffer(buf))).ec) got.append(buf, r.bytes);
        EXPECT_EQ(got, "response");
        EXPECT_EQ(r.ec, asio::error::eof);
        static const std::string late = "late";
        for (int i = 0; i < 50 && !r.ec; ++i) r = co_await client.Write(asio::buffer(late));
        asio::steady_timer t(ex);
        t.expires_after(std::chrono::milliseconds(50));
        co_await t.async_wait(asio::use_awaitable);
        r = co_await client.Write(asio::buffer(late));
        EXPECT_TRUE(r.ec) << "the spliced side was reset: writes to it fail";
      }(),
      std::chrono::seconds(5));
}

// The ferro control connection speaks TLS 1.3 only (FerroTunnel's rustls peers do); the core
// context refuses older clients when asked to.
TEST(TlsContextTest, Tls13OnlyRefusesATls12Client) {
  test::TempDir dir;
  const auto cert = test::MakeSelfSignedCert(dir.path());
  for (const bool tls13_only : {false, true}) {
    SCOPED_TRACE(tls13_only ? "tls13_only" : "default");
    asio::io_context io;
    TlsServerOptions server_options;
    server_options.cert_file = cert.cert;
    server_options.key_file = cert.key;
    server_options.tls13_only = tls13_only;
    auto server_ctx = MakeTlsServerContext(server_options);
    TlsClientOptions client_options;
    client_options.ca_file = cert.cert;
    auto client_ctx = MakeTlsClientContext(client_options);
    SSL_CTX_set_max_proto_version(client_ctx->native_handle(), TLS1_2_VERSION);
    auto [c, s] = test::TcpPair(io);
    TlsStream client(std::move(c), *client_ctx, TlsStream::Role::kClient, "localhost");
    TlsStream server(std::move(s), *server_ctx, TlsStream::Role::kServer);
    RunFor(
        io,
        [&]() -> awaitable<void> {
          auto ex = co_await asio::this_coro::executor;
          bool server_done = false;
          error_code server_ec;
          asio::co_spawn(
              ex,
              [&]() -> awaitable<void> {
                server_ec = co_await server.Handshake();
                server_done = true;
              },
              asio::detached);
          const error_code client_ec = co_await client.Handshake();
          if (client_ec) client.Reset();
          asio::steady_timer t(ex);
          for (int i = 0; i < 400 && !server_done; ++i) {
            t.expires_after(std::chrono::milliseconds(5));
            co_await t.async_wait(asio::use_awaitable);
          }
          if (tls13_only) {
            EXPECT_TRUE(server_ec) << "a TLS 1.2 client must be refused";
            EXPECT_TRUE(client_ec);
          } else {
            EXPECT_FALSE(server_ec) << server.LastError();
            EXPECT_FALSE(client_ec) << client.LastError();
            EXPECT_EQ(client.Version(), "TLSv1.2");
          }
        }(),
        std::chrono::seconds(10));
  }
}

}  // namespace
}  // namespace tunnelkit
