// QUIC handshake: ALPN, certificate verification, option errors, and a first echo.
#include <gtest/gtest.h>

#include "quic_test_env.hpp"

namespace tunnelkit::cloudflare::quic::test {
namespace {

// Connects with `client_options` to a fresh echo server; returns the QuicError text, or ""
// when the handshake succeeded.
struct DialOutcome {
  bool connected = false;
  boost::system::error_code ec;
  std::string message;
  std::string alpn;
};

DialOutcome Dial(QuicClientOptions client_options, QuicServerOptions server_options) {
  asio::io_context io;
  QuicServer server(io.get_executor(), Loopback(), server_options,
                    [](std::shared_ptr<QuicConnection> c) { ServeEcho(c); });
  DialOutcome out;
  RunWithDeadline(io, [&]() -> asio::awaitable<void> {
    try {
      auto conn =
          co_await QuicClient::Connect(io.get_executor(), server.local_endpoint(), client_options);
      out.connected = true;
      out.alpn = conn->alpn();
      conn->Close(0, "done");
    } catch (const QuicError& e) {
      out.ec = e.code();
      out.message = e.what();
    }
  });
  return out;
}

TEST(QuicHandshake, CompletesWithAlpnArgotunnel) {
  asio::io_context io;
  std::shared_ptr<QuicConnection> accepted;
  QuicServer server(io.get_executor(), Loopback(), ServerOptions(),
                    [&](std::shared_ptr<QuicConnection> c) { accepted = c; });
  RunWithDeadline(io, [&]() -> asio::awaitable<void> {
    auto conn =
        co_await QuicClient::Connect(io.get_executor(), server.local_endpoint(), ClientOptions());
    EXPECT_TRUE(conn->is_open());
    EXPECT_EQ(conn->alpn(), "argotunnel");
    for (int i = 0; i < 100 && !accepted; ++i) co_await Sleep(10ms);
    EXPECT_TRUE(accepted);
    if (accepted) {
      EXPECT_EQ(accepted->alpn(), "argotunnel");
      EXPECT_EQ(accepted->role(), QuicConnection::Role::kServer);
      EXPECT_EQ(accepted->remote_endpoint(), conn->local_endpoint());
    }
    EXPECT_EQ(server.connection_count(), 1u);
  });
}

TEST(QuicHandshake, TrustRootsFromPemText) {
  auto client = ClientOptions();
  client.ca_file.clear();
  client.ca_pem = ReadFile(Pki().ca_pem);
  auto out = Dial(client, ServerOptions());
  EXPECT_TRUE(out.connected) << out.message;
}

TEST(QuicHandshake, UntrustedCertificateIsRefused) {
  auto client = ClientOptions();
  client.ca_file = Pki().other_ca_pem;
  auto out = Dial(client, ServerOptions());
  EXPECT_FALSE(out.connected);
  EXPECT_EQ(out.ec, make_error_code(QuicErrc::kTlsVerificationFailed));
  EXPECT_EQ(out.message.rfind("TLS verification failed: ", 0), 0u) << out.message;
  EXPECT_NE(out.message.find("NOT trusted"), std::string::npos) << out.message;
  EXPECT_EQ(out.message.find('\n'), std::string::npos);
}

TEST(QuicHandshake, WrongServerNameIsRefused) {
  auto client = ClientOptions();
  client.sni = "edge.example.com";
  auto out = Dial(client, ServerOptions());
  EXPECT_FALSE(out.connected);
  EXPECT_EQ(out.ec, make_error_code(QuicErrc::kTlsVerificationFailed));
  EXPECT_NE(out.message.find("name in the certificate does not match"), std::string::npos)
      << out.message;
}

TEST(QuicHandshake, VerificationCanBeTurnedOff) {
  auto client = ClientOptions();
  client.ca_file = Pki().other_ca_pem;
  client.verify_peer = false;
  auto out = Dial(client, ServerOptions());
  EXPECT_TRUE(out.connected) << out.message;
}

TEST(QuicHandshake, WrongAlpnIsRefused) {
  auto client = ClientOptions();
  client.alpn = "h3";
  auto out = Dial(client, ServerOptions());
  EXPECT_FALSE(out.connected);
  EXPECT_EQ(out.ec, make_error_code(QuicErrc::kHandshakeFailed));
  EXPECT_EQ(out.message.rfind("TLS handshake failed: ", 0), 0u) << out.message;
  // no_application_protocol (120) as CRYPTO_ERROR 0x100 + 120
  EXPECT_NE(out.message.find("0x178"), std::string::npos) << out.message;
  EXPECT_NE(out.message.find("no_application_protocol"), std::string::npos) << out.message;
}

TEST(QuicHandshake, HandshakeTimesOutAgainstSilentPeer) {
  asio::io_context io;
  udp::socket silent(io, Loopback());  // receives the Initial, never answers
  auto client = ClientOptions();
  client.transport.handshake_timeout = 300ms;
  RunWithDeadline(io, [&]() -> asio::awaitable<void> {
    auto start = std::chrono::steady_clock::now();
    try {
      co_await QuicClient::Connect(io.get_executor(), silent.local_endpoint(), client);
      ADD_FAILURE() << "connected to a silent peer";
    } catch (const QuicError& e) {
      EXPECT_EQ(e.code(), make_error_code(QuicErrc::kHandshakeTimeout)) << e.what();
    }
    EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
  });
}

TEST(QuicHandshake, BadOptionsAreRefusedNamingTheField) {
  asio::io_context io;
  auto client = ClientOptions();
  client.ca_file = (Pki().dir / "missing.pem").string();
  EXPECT_THROW(
      {
        try {
          RunWithDeadline(io, [&]() -> asio::awaitable<void> {
            co_await QuicClient::Connect(io.get_executor(), udp::endpoint(Loopback().address(), 9),
                                         client);
          });
        } catch (const QuicError& e) {
          EXPECT_NE(std::string(e.what()).find("ca_file"), std::string::npos) << e.what();
          throw;
        }
      },
      QuicError);

  auto server = ServerOptions();
  server.key_file = (Pki().dir / "missing.key").string();
  try {
    QuicServer s(io.get_executor(), Loopback(), server, nullptr);
    ADD_FAILURE() << "server started without its key";
  } catch (const QuicError& e) {
    EXPECT_NE(std::string(e.what()).find("missing.key"), std::string::npos) << e.what();
  }
}

TEST(QuicEcho, FiveMegabytesOnOneStream) {
  asio::io_context io;
  QuicServer server(io.get_executor(), Loopback(), ServerOptions(),
                    [](std::shared_ptr<QuicConnection> c) { ServeEcho(c); });
  const std::string payload = Pattern(5 * 1024 * 1024 + 123, 1);
  RunWithDeadline(io, [&]() -> asio::awaitable<void> {
    auto conn =
        co_await QuicClient::Connect(io.get_executor(), server.local_endpoint(), ClientOptions());
    auto stream = co_await conn->OpenStream();
    asio::co_spawn(io, WriteAll(*stream, payload), asio::detached);
    std::string echoed = co_await ReadAll(*stream);
    EXPECT_EQ(echoed.size(), payload.size());
    EXPECT_EQ(tunnelkit::test::Sha256Hex(echoed), tunnelkit::test::Sha256Hex(payload));
    conn->Close(0, "done");
  });
}

}  // namespace
}  // namespace tunnelkit::cloudflare::quic::test
