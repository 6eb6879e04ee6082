// QUIC connection lifetime: peer close, idle timeout, keepalive, dropping the last handle,
// server shutdown. Pending stream operations must fail rather than hang.
#include <gtest/gtest.h>

#include "quic_test_env.hpp"

namespace tunnelkit::cloudflare::quic::test {
namespace {

TEST(QuicLifecycle, PeerCloseFailsPendingReads) {
  asio::io_context io;
  std::shared_ptr<QuicConnection> accepted;
  QuicServer server(io.get_executor(), Loopback(), ServerOptions(),
                    [&](std::shared_ptr<QuicConnection> c) { accepted = c; });
  RunWithDeadline(io, [&]() -> asio::awaitable<void> {
    auto conn =
        co_await QuicClient::Connect(io.get_executor(), server.local_endpoint(), ClientOptions());
    auto stream = co_await conn->OpenStream();
    co_await WriteAll(*stream, "hi", 64, false);
    boost::system::error_code read_error;
    bool read_done = false;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          std::array<char, 16> b;
          read_error = (co_await stream->ReadSome(asio::buffer(b))).ec;
          read_done = true;
        },
        asio::detached);
    while (!accepted) co_await Sleep(5ms);
    co_await Sleep(20ms);
    EXPECT_FALSE(read_done);
    accepted->Close(7, "bye");
    auto info = co_await conn->WaitClosed();
    while (!read_done) co_await Sleep(5ms);
    EXPECT_EQ(read_error, make_error_code(QuicErrc::kPeerClosed));
    EXPECT_EQ(info.ec, make_error_code(QuicErrc::kPeerClosed));
    EXPECT_TRUE(info.application);
    EXPECT_EQ(info.code, 7u);
    EXPECT_EQ(info.reason, "bye");
    EXPECT_NE(info.message.find("bye"), std::string::npos) << info.message;
    EXPECT_FALSE(conn->is_open());
    auto w = co_await stream->Write(asio::buffer("x", 1));
    EXPECT_EQ(w.ec, make_error_code(QuicErrc::kPeerClosed));
    EXPECT_THROW(co_await conn->OpenStream(), QuicError);
    EXPECT_EQ(co_await conn->AcceptStream(), nullptr);
    EXPECT_EQ(accepted->close_info().ec, make_error_code(QuicErrc::kConnectionClosed));
    EXPECT_EQ(server.connection_count(), 0u);
  });
}

TEST(QuicLifecycle, IdleTimeoutFailsPendingReads) {
  asio::io_context io;
  auto server_options = ServerOptions();
  server_options.transport.keepalive_interval = 0ms;
  server_options.transport.idle_timeout = 300ms;
  QuicServer server(io.get_executor(), Loopback(), server_options,
                    [](std::shared_ptr<QuicConnection> c) { ServeEcho(c); });
  auto client = ClientOptions();
  client.transport.keepalive_interval = 0ms;
  client.transport.idle_timeout = 300ms;
  RunWithDeadline(io, [&]() -> asio::awaitable<void> {
    auto conn = co_await QuicClient::Connect(io.get_executor(), server.local_endpoint(), client);
    auto stream = co_await conn->OpenStream();
    co_await WriteAll(*stream, "hi", 64, false);
    std::array<char, 16> b;
    auto first = co_await stream->ReadSome(asio::buffer(b));  // the echo
    EXPECT_EQ(first.bytes, 2u);
    auto start = std::chrono::steady_clock::now();
    auto r = co_await stream->ReadSome(asio::buffer(b));  // nothing more comes
    auto waited = std::chrono::steady_clock::now() - start;
    EXPECT_EQ(r.ec, make_error_code(QuicErrc::kIdleTimeout)) << r.ec.message();
    EXPECT_GE(waited, 250ms);
    EXPECT_LT(waited, 3s);
    EXPECT_EQ(conn->close_info().ec, make_error_code(QuicErrc::kIdleTimeout));
    // The server saw the same silence.
    for (int i = 0; i < 200 && server.connection_count() > 0; ++i) co_await Sleep(5ms);
    EXPECT_EQ(server.connection_count(), 0u);
  });
}

TEST(QuicLifecycle, KeepaliveKeepsAQuietConnectionAlive) {
  asio::io_context io;
  auto server_options = ServerOptions();
  server_options.transport.keepalive_interval = 0ms;  // only the client pings
  server_options.transport.idle_timeout = 400ms;
  QuicServer server(io.get_executor(), Loopback(), server_options,
                    [](std::shared_ptr<QuicConnection> c) { ServeEcho(c); });
  auto client = ClientOptions();
  client.transport.keepalive_interval = 100ms;
  client.transport.idle_timeout = 400ms;
  RunWithDeadline(io, [&]() -> asio::awaitable<void> {
    auto conn = co_await QuicClient::Connect(io.get_executor(), server.local_endpoint(), client);
    co_await Sleep(1500ms);
    EXPECT_TRUE(conn->is_open()) << conn->close_info().message;
    EXPECT_EQ(server.connection_count(), 1u);
    auto stream = co_await conn->OpenStream();
    co_await WriteAll(*stream, "still here");
    EXPECT_EQ(co_await ReadAll(*stream), "still here");
  });
}

TEST(QuicLifecycle, DroppingTheLastHandleClosesTheConnection) {
  asio::io_context io;
  std::shared_ptr<QuicConnection> accepted;
  QuicServer server(io.get_executor(), Loopback(), ServerOptions(),
                    [&](std::shared_ptr<QuicConnection> c) { accepted = c; });
  RunWithDeadline(io, [&]() -> asio::awaitable<void> {
    {
      auto conn =
          co_await QuicClient::Connect(io.get_executor(), server.local_endpoint(), ClientOptions());
      auto stream = co_await conn->OpenStream();
      co_await WriteAll(*stream, "x", 64, false);
      while (!accepted) co_await Sleep(5ms);
    }
    auto info = co_await accepted->WaitClosed();
    EXPECT_EQ(info.ec, make_error_code(QuicErrc::kPeerClosed)) << info.message;
    EXPECT_EQ(server.connection_count(), 0u);
  });
}

TEST(QuicLifecycle, ServerCloseReachesClients) {
  asio::io_context io;
  QuicServer server(io.get_executor(), Loopback(), ServerOptions(),
                    [](std::shared_ptr<QuicConnection> c) { ServeEcho(c); });
  RunWithDeadline(io, [&]() -> asio::awaitable<void> {
    auto a =
        co_await QuicClient::Connect(io.get_executor(), server.local_endpoint(), ClientOptions());
    auto b =
        co_await QuicClient::Connect(io.get_executor(), server.local_endpoint(), ClientOptions());
    // One round trip each, so both handshakes are confirmed: before that, QUIC carries an
    // application close as a bare transport APPLICATION_ERROR without code and reason.
    for (auto* c : {&a, &b}) {
      auto s = co_await (*c)->OpenStream();
      co_await WriteAll(*s, "ping");
      EXPECT_EQ(co_await ReadAll(*s), "ping");
    }
    EXPECT_EQ(server.connection_count(), 2u);
    server.Close(3, "shutting down");
    auto ia = co_await a->WaitClosed();
    auto ib = co_await b->WaitClosed();
    EXPECT_EQ(ia.code, 3u);
    EXPECT_EQ(ib.reason, "shutting down");
    EXPECT_EQ(server.connection_count(), 0u);
  });
}

}  // namespace
}  // namespace tunnelkit::cloudflare::quic::test
