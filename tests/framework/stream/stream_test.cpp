// TcpStream, UnixStream, TlsStream, MakeStreamPair and Splice over real sockets on 127.0.0.1.
#include <malloc.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/write.hpp>

#include "process.hpp"
#include "process_memory.hpp"
#include "sanitizer.hpp"
#include "test_util.hpp"
#include "tunnelkit/stream/asio_adapter.hpp"
#include "tunnelkit/stream/pipe.hpp"
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

std::string RandomBytes(std::size_t n, unsigned seed = 7) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

// Reads until eof; returns everything (or throws on an error).
awaitable<std::string> ReadAll(Stream& s) {
  std::string out;
  std::vector<char> buf(32 * 1024);
  for (;;) {
    IoResult r = co_await s.ReadSome(asio::buffer(buf));
    if (r.ec == asio::error::eof) co_return out;
    if (r.ec) throw boost::system::system_error(r.ec, "read");
    out.append(buf.data(), r.bytes);
  }
}

awaitable<void> WriteAllAndClose(Stream& s, std::string data) {
  IoResult r = co_await s.Write(asio::buffer(data));
  EXPECT_FALSE(r.ec) << r.ec.message();
  EXPECT_EQ(r.bytes, data.size());
  error_code ec = co_await s.ShutdownWrite();
  EXPECT_FALSE(ec) << ec.message();
}

// Client sends `request` then half-closes; the server reads to eof, answers with the SHA-256
// of what it got plus `extra`, then closes. Proves both directions and half-close.
awaitable<void> HalfCloseExchange(Stream& client, Stream& server, std::string request) {
  auto ex = co_await asio::this_coro::executor;
  asio::co_spawn(
      ex,
      [&server]() -> awaitable<void> {
        std::string got = co_await ReadAll(server);
        // Writing still works after the peer's half-close.
        std::string answer = test::Sha256Hex(got) + ":" + std::to_string(got.size());
        co_await WriteAllAndClose(server, answer);
      },
      asio::detached);
  asio::co_spawn(ex, WriteAllAndClose(client, request), asio::detached);
  std::string answer = co_await ReadAll(client);
  EXPECT_EQ(answer, test::Sha256Hex(request) + ":" + std::to_string(request.size()));
}

TEST(TcpStreamTest, EchoWithHalfClose) {
  asio::io_context io;
  auto [c, s] = test::TcpPair(io);
  TcpStream client(std::move(c));
  TcpStream server(std::move(s));
  asio::ip::tcp::no_delay nodelay;
  client.socket().get_option(nodelay);
  EXPECT_TRUE(nodelay.value());
  EXPECT_NE(client.Describe().find("tcp 127.0.0.1:"), std::string::npos);
  RunFor(io, HalfCloseExchange(client, server, RandomBytes(3 * 1024 * 1024)));
}

TEST(TcpStreamTest, ResetMakesPeerFail) {
  asio::io_context io;
  auto [c, s] = test::TcpPair(io);
  TcpStream client(std::move(c));
  TcpStream server(std::move(s));
  RunFor(io, [&]() -> awaitable<void> {
    client.Reset();
    char buf[16];
    IoResult r = co_await server.ReadSome(asio::buffer(buf));
    EXPECT_EQ(r.ec, asio::error::connection_reset) << r.ec.message();
  }());
}

TEST(TcpStreamTest, ConnectRefusedAndTimeout) {
  asio::io_context io;
  int port = test::FreeTcpPort();
  RunFor(io, [&]() -> awaitable<void> {
    error_code ec;
    auto stream = co_await ConnectTcpStream(io.get_executor(), "127.0.0.1", std::to_string(port),
                                            std::chrono::seconds(5), ec);
    EXPECT_EQ(stream, nullptr);
    EXPECT_EQ(ec, asio::error::connection_refused) << ec.message();
  }());
}

TEST(UnixStreamTest, EchoWithHalfClose) {
  asio::io_context io;
  test::TempDir dir;
  std::string path = (dir.path() / "sock").string();
  asio::local::stream_protocol::acceptor acceptor(io, asio::local::stream_protocol::endpoint(path));
  RunFor(io, [&]() -> awaitable<void> {
    error_code ec;
    auto client = co_await ConnectUnixStream(io.get_executor(), path, std::chrono::seconds(5), ec);
    EXPECT_FALSE(ec) << ec.message();
    UnixStream server(co_await acceptor.async_accept(asio::use_awaitable));
    co_await HalfCloseExchange(*client, server, RandomBytes(500 * 1024));
  }());
}

TEST(PipeStreamTest, EchoWithHalfCloseAndBackpressure) {
  asio::io_context io;
  auto [a, b] = MakeStreamPair(io.get_executor(), 4096);
  RunFor(io, HalfCloseExchange(*a, *b, RandomBytes(1024 * 1024)));
}

TEST(PipeStreamTest, DestroyingOneEndResetsTheOther) {
  asio::io_context io;
  auto [a, b] = MakeStreamPair(io.get_executor());
  RunFor(io, [&, &a = a, &b = b]() -> awaitable<void> {
    a.reset();
    char buf[4];
    IoResult r = co_await b->ReadSome(asio::buffer(buf));
    EXPECT_EQ(r.ec, asio::error::connection_reset);
  }());
}

// StreamRef completes an operation that needs no waiting (TryReadSome / TryWrite) without a
// coroutine, but still through the executor: the handler never runs inside the initiating call.
TEST(StreamRefTest, ReadyOperationsCompleteThroughTheExecutor) {
  asio::io_context io;
  auto [a, b] = MakeStreamPair(io.get_executor(), 64);
  StreamRef writer(*a);
  StreamRef reader(*b);
  bool wrote = false;
  writer.async_write_some(asio::buffer(std::string_view("hello")),
                          [&](error_code ec, std::size_t n) {
                            EXPECT_FALSE(ec);
                            EXPECT_EQ(n, 5u);
                            wrote = true;
                          });
  EXPECT_FALSE(wrote);
  io.run();
  EXPECT_TRUE(wrote);
  io.restart();
  char buf[16];
  std::size_t got = 0;
  reader.async_read_some(asio::buffer(buf), [&](error_code ec, std::size_t n) {
    EXPECT_FALSE(ec);
    got = n;
  });
  EXPECT_EQ(got, 0u);
  io.run();
  EXPECT_EQ(std::string(buf, got), "hello");
  // A write the pipe cannot take at once (capacity 64) goes the asynchronous way and still
  // completes once the reader drains.
  io.restart();
  const std::string big(200, 'x');
  std::size_t big_written = 0;
  asio::async_write(writer, asio::buffer(big), [&](error_code ec, std::size_t n) {
    EXPECT_FALSE(ec);
    big_written = n;
  });
  std::string drained;
  std::function<void()> read_more = [&] {
    reader.async_read_some(asio::buffer(buf), [&](error_code ec, std::size_t n) {
      if (ec) return;
      drained.append(buf, n);
      if (drained.size() < big.size()) read_more();
    });
  };
  read_more();
  io.run();
  EXPECT_EQ(big_written, big.size());
  EXPECT_EQ(drained, big);
}

class TlsStreamTest : public ::testing::Test {
 protected:
  void SetUp() override { cert_ = test::MakeSelfSignedCert(dir_.path()); }

  // Handshakes a client (with `client_ctx`, SNI `name`) against a server using cert_.
  awaitable<std::pair<error_code, error_code>> Handshake(TlsStream& client, TlsStream& server) {
    auto ex = co_await asio::this_coro::executor;
    error_code server_ec;
    bool server_done = false;
    asio::co_spawn(
        ex,
        [&]() -> awaitable<void> {
          server_ec = co_await server.Handshake();
          server_done = true;
        },
        asio::detached);
    error_code client_ec = co_await client.Handshake();
    if (client_ec) client.Reset();
    asio::steady_timer t(ex);
    for (int i = 0; i < 500 && !server_done; ++i) {
      t.expires_after(std::chrono::milliseconds(5));
      co_await t.async_wait(asio::use_awaitable);
    }
    co_return std::make_pair(client_ec, server_ec);
  }

  // A server with cert_, and a client that trusts it.
  std::shared_ptr<asio::ssl::context> ServerContext() {
    return MakeTlsServerContext({cert_.cert, cert_.key, "", {}});
  }
  std::shared_ptr<asio::ssl::context> TrustingClientContext() {
    TlsClientOptions options;
    options.ca_file = cert_.cert;
    return MakeTlsClientContext(options);
  }

  // A client (trusting cert_, SNI and name check `name`) and a server over a fresh loopback
  // pair, with the handshake done on `io`.
  struct Connected {
    std::shared_ptr<asio::ssl::context> client_ctx;
    std::shared_ptr<asio::ssl::context> server_ctx;
    std::unique_ptr<TlsStream> client;
    std::unique_ptr<TlsStream> server;
  };
  Connected ConnectedPair(asio::io_context& io, const std::string& name = "localhost") {
    auto [c, s] = test::TcpPair(io);
    Connected pair{TrustingClientContext(), ServerContext(), nullptr, nullptr};
    pair.client =
        std::make_unique<TlsStream>(std::move(c), *pair.client_ctx, TlsStream::Role::kClient, name);
    pair.server =
        std::make_unique<TlsStream>(std::move(s), *pair.server_ctx, TlsStream::Role::kServer);
    RunFor(io, [&]() -> awaitable<void> {
      auto [cec, sec] = co_await Handshake(*pair.client, *pair.server);
      EXPECT_FALSE(cec) << pair.client->LastError();
      EXPECT_FALSE(sec) << pair.server->LastError();
    }());
    io.restart();
    return pair;
  }

  test::TempDir dir_;
  test::CertFiles cert_;
};

TEST_F(TlsStreamTest, VerifiedEchoWithHalfClose) {
  asio::io_context io;
  auto server_ctx = MakeTlsServerContext({cert_.cert, cert_.key, "", {"test/1"}});
  TlsClientOptions client_opts;
  client_opts.ca_file = cert_.cert;
  client_opts.alpn = {"test/1"};
  auto client_ctx = MakeTlsClientContext(client_opts);
  auto [c, s] = test::TcpPair(io);
  TlsStream client(std::move(c), *client_ctx, TlsStream::Role::kClient, "localhost");
  TlsStream server(std::move(s), *server_ctx, TlsStream::Role::kServer);
  RunFor(io, [&]() -> awaitable<void> {
    auto [cec, sec] = co_await Handshake(client, server);
    EXPECT_FALSE(cec) << client.LastError();
    if (cec) co_return;
    EXPECT_FALSE(sec) << server.LastError();
    if (sec) co_return;
    EXPECT_EQ(client.Version(), "TLSv1.3");
    EXPECT_EQ(client.AlpnProtocol(), "test/1");
    co_await HalfCloseExchange(client, server, RandomBytes(2 * 1024 * 1024));
  }());
}

// Our server picks AES-128-GCM even for a client that lists AES-256-GCM first (OpenSSL's
// default order, which rustls shares); our clients ask for it first too.
TEST_F(TlsStreamTest, NegotiatesAes128Gcm) {
  asio::io_context io;
  auto server_ctx = ServerContext();
  auto ours = TrustingClientContext();
  asio::ssl::context plain_openssl(asio::ssl::context::tls_client);
  plain_openssl.set_verify_mode(asio::ssl::verify_none);
  for (asio::ssl::context* client_ctx : {ours.get(), &plain_openssl}) {
    auto [c, s] = test::TcpPair(io);
    TlsStream client(std::move(c), *client_ctx, TlsStream::Role::kClient, "localhost");
    TlsStream server(std::move(s), *server_ctx, TlsStream::Role::kServer);
    RunFor(io, [&]() -> awaitable<void> {
      auto [cec, sec] = co_await Handshake(client, server);
      EXPECT_FALSE(cec) << client.LastError();
      EXPECT_FALSE(sec) << server.LastError();
      EXPECT_STREQ(SSL_CIPHER_get_name(SSL_get_current_cipher(client.native_handle())),
                   "TLS_AES_128_GCM_SHA256");
    }());
    io.restart();
  }
  // A client of ours offers AES-128-GCM first.
  auto [c, s] = test::TcpPair(io);
  TlsStream client(std::move(c), *ours, TlsStream::Role::kClient, "localhost");
  STACK_OF(SSL_CIPHER)* offered = SSL_get_ciphers(client.native_handle());
  ASSERT_GT(sk_SSL_CIPHER_num(offered), 0);
  EXPECT_STREQ(SSL_CIPHER_get_name(sk_SSL_CIPHER_value(offered, 0)), "TLS_AES_128_GCM_SHA256");
}

// A large write leaves in a few send() calls of many records each, not one per 16 KiB
// record (the kernel's cost per call and per segment was a quarter of a TLS relay's time);
// the bytes arrive intact, and a small write still goes out at once.
TEST_F(TlsStreamTest, LargeWritesGatherRecordsIntoFewSends) {
  asio::io_context io;
  Connected pair = ConnectedPair(io);
  TlsStream& client = *pair.client;
  TlsStream& server = *pair.server;
  constexpr std::size_t kSize = 4 * 1024 * 1024;
  std::string sent(kSize, '\0');
  for (std::size_t i = 0; i < kSize; ++i) sent[i] = static_cast<char>((i * 131 + i / 7) & 0xff);
  std::string got;
  RunFor(io, [&]() -> awaitable<void> {
    const std::uint64_t before = client.socket_writes();
    bool written = false;
    asio::co_spawn(
        io,
        [&]() -> awaitable<void> {
          IoResult w = co_await client.Write(asio::buffer(sent));
          EXPECT_FALSE(w.ec) << w.ec.message();
          EXPECT_EQ(w.bytes, kSize);
          written = true;
        },
        asio::detached);
    std::vector<char> buf(256 * 1024);
    while (got.size() < kSize) {
      IoResult r = co_await server.ReadSome(asio::buffer(buf));
      if (r.ec) break;
      got.append(buf.data(), r.bytes);
    }
    EXPECT_TRUE(written);
    // 256 records of 16 KiB; gathered in 128 KiB batches: 32 sends, more if the socket
    // filled up in between (each stall adds one).
    const std::uint64_t sends = client.socket_writes() - before;
    EXPECT_LE(sends, 128u) << "one send per record is " << kSize / 16384;
    const std::uint64_t small_before = client.socket_writes();
    std::string ping = "ping";
    IoResult w = co_await client.Write(asio::buffer(ping));
    EXPECT_FALSE(w.ec);
    EXPECT_EQ(client.socket_writes() - small_before, 1u);
    char small[16];
    IoResult r = co_await server.ReadSome(asio::buffer(small));
    EXPECT_EQ(std::string(small, r.bytes), ping);
  }());
  EXPECT_EQ(got.size(), kSize);
  EXPECT_TRUE(got == sent);
}

// A record written straight through (here close_notify) that meets a full socket waits for
// the socket instead of retrying at once: the peer reads nothing, so a retry loop would spin.
TEST_F(TlsStreamTest, AlertMeetingAFullSocketWaitsForIt) {
  asio::io_context io;
  Connected pair = ConnectedPair(io);
  TlsStream& client = *pair.client;
  TlsStream& server = *pair.server;
  // Fill the socket behind TLS's back (the peer never reads in this test).
  std::vector<char> junk(64 * 1024, 'x');
  while (::send(client.socket().native_handle(), junk.data(), junk.size(),
                MSG_DONTWAIT | MSG_NOSIGNAL) > 0) {
  }
  const std::uint64_t before = client.socket_writes();
  bool finished = false;
  asio::co_spawn(
      io,
      [&]() -> awaitable<void> {
        co_await client.ShutdownWrite();
        finished = true;
      },
      asio::detached);
  io.restart();
  io.run_for(std::chrono::milliseconds(300));
  EXPECT_FALSE(finished);
  EXPECT_LE(client.socket_writes() - before, 3u);
  client.Reset();
  server.Reset();
  io.run_for(std::chrono::milliseconds(100));
  EXPECT_TRUE(finished);
}

// After Reset, reads and writes fail; they never touch the socket that reuses the number.
TEST_F(TlsStreamTest, AfterResetNothingReachesASocketReusingTheDescriptor) {
  asio::io_context io;
  Connected pair = ConnectedPair(io);
  const int old_fd = pair.client->socket().native_handle();
  pair.client->Reset();
  auto [a, b] = test::TcpPair(io);
  ASSERT_TRUE(a.native_handle() == old_fd || b.native_handle() == old_fd)
      << "the kernel did not reuse the descriptor; the test cannot tell";
  auto& reused = a.native_handle() == old_fd ? a : b;
  auto& other = a.native_handle() == old_fd ? b : a;
  const char byte = 'z';
  ASSERT_EQ(::send(other.native_handle(), &byte, 1, MSG_NOSIGNAL), 1);
  RunFor(io, [&]() -> awaitable<void> {
    std::string data = "must not arrive";
    IoResult w = co_await pair.client->Write(asio::buffer(data));
    EXPECT_TRUE(w.ec);
    char buf[16];
    IoResult r = co_await pair.client->ReadSome(asio::buffer(buf));
    EXPECT_TRUE(r.ec);
  }());
  char got[64];
  EXPECT_EQ(::recv(other.native_handle(), got, sizeof got, MSG_DONTWAIT), -1);
  EXPECT_EQ(errno, EAGAIN);
  EXPECT_EQ(::recv(reused.native_handle(), got, sizeof got, MSG_DONTWAIT), 1);
}

TEST_F(TlsStreamTest, VerifiesIpAddressSan) {
  asio::io_context io;
  auto server_ctx = ServerContext();
  auto client_ctx = TrustingClientContext();
  auto [c, s] = test::TcpPair(io);
  TlsStream client(std::move(c), *client_ctx, TlsStream::Role::kClient, "127.0.0.1");
  TlsStream server(std::move(s), *server_ctx, TlsStream::Role::kServer);
  RunFor(io, [&]() -> awaitable<void> {
    auto [cec, sec] = co_await Handshake(client, server);
    EXPECT_FALSE(cec) << client.LastError();
    std::string ping = "ping";
    co_await HalfCloseExchange(client, server, ping);
  }());
}

TEST_F(TlsStreamTest, RejectsUnknownIssuerAndWrongHostname) {
  asio::io_context io;
  auto server_ctx = ServerContext();
  // System roots do not know our self-signed certificate.
  auto system_ctx = MakeTlsClientContext({});
  TlsClientOptions pinned;
  pinned.ca_file = cert_.cert;
  auto pinned_ctx = MakeTlsClientContext(pinned);
  struct Refusal {
    decltype(system_ctx.get()) ctx;
    const char* name;
    const char* reason;  // a plain member, not a structured binding: the lambda captures it
  };
  for (const Refusal& refusal : {Refusal{system_ctx.get(), "localhost", "self-signed"},
                                 Refusal{pinned_ctx.get(), "other.example", "hostname mismatch"}}) {
    auto* ctx = refusal.ctx;
    const char* name = refusal.name;
    const char* reason = refusal.reason;
    auto [c, s] = test::TcpPair(io);
    TlsStream client(std::move(c), *ctx, TlsStream::Role::kClient, name);
    TlsStream server(std::move(s), *server_ctx, TlsStream::Role::kServer);
    RunFor(io, [&]() -> awaitable<void> {
      auto [cec, sec] = co_await Handshake(client, server);
      EXPECT_TRUE(cec) << reason;
      EXPECT_NE(client.LastError().find("certificate verify failed"), std::string::npos)
          << reason << ": " << client.LastError();
      EXPECT_TRUE(sec) << reason;
    }());
  }
}

TEST_F(TlsStreamTest, InsecureModeSkipsVerification) {
  asio::io_context io;
  auto server_ctx = ServerContext();
  TlsClientOptions opts;
  opts.insecure_skip_verify = true;
  auto client_ctx = MakeTlsClientContext(opts);
  auto [c, s] = test::TcpPair(io);
  TlsStream client(std::move(c), *client_ctx, TlsStream::Role::kClient, "wrong.example");
  TlsStream server(std::move(s), *server_ctx, TlsStream::Role::kServer);
  RunFor(io, [&]() -> awaitable<void> {
    auto [cec, sec] = co_await Handshake(client, server);
    EXPECT_FALSE(cec) << client.LastError();
    if (cec) co_return;
    co_await HalfCloseExchange(client, server, RandomBytes(100000));
  }());
}

TEST_F(TlsStreamTest, MutualTlsRequiresClientCertificate) {
  asio::io_context io;
  auto client_cert = test::MakeSelfSignedCert(dir_.path(), "client", "client");
  auto server_ctx = MakeTlsServerContext({cert_.cert, cert_.key, client_cert.cert, {}});
  TlsClientOptions with_cert;
  with_cert.ca_file = cert_.cert;
  with_cert.cert_file = client_cert.cert;
  with_cert.key_file = client_cert.key;
  TlsClientOptions without_cert;
  without_cert.ca_file = cert_.cert;
  for (bool present : {true, false}) {
    auto ctx = MakeTlsClientContext(present ? with_cert : without_cert);
    auto [c, s] = test::TcpPair(io);
    TlsStream client(std::move(c), *ctx, TlsStream::Role::kClient, "localhost");
    TlsStream server(std::move(s), *server_ctx, TlsStream::Role::kServer);
    RunFor(io, [&]() -> awaitable<void> {
      auto [cec, sec] = co_await Handshake(client, server);
      if (present) {
        EXPECT_FALSE(sec) << server.LastError();
        std::string mtls = "mtls";
        co_await HalfCloseExchange(client, server, mtls);
      } else {
        // TLS 1.3: the client learns of the rejection on its first read.
        EXPECT_TRUE(sec);
        char buf[8];
        IoResult r = co_await client.ReadSome(asio::buffer(buf));
        EXPECT_TRUE(r.ec);
        EXPECT_NE(r.ec, asio::error::eof);
      }
    }());
  }
}

TEST(TlsContextTest, MissingFilesAreNamed) {
  try {
    MakeTlsServerContext({"/nonexistent/cert.pem", "/nonexistent/key.pem", "", {}});
    FAIL() << "expected an exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/cert.pem"), std::string::npos);
  }
  TlsClientOptions opts;
  opts.ca_file = "/nonexistent/ca.pem";
  EXPECT_THROW(MakeTlsClientContext(opts), std::runtime_error);
}

// client <-> [s1 | Splice | s2] <-> server, half-close in both orders.
TEST(SpliceTest, CopiesBothWaysAndPropagatesHalfClose) {
  asio::io_context io;
  auto [c1, s1] = test::TcpPair(io);
  auto [c2, s2] = test::TcpPair(io);
  TcpStream client(std::move(c1)), left(std::move(s1)), right(std::move(c2)), server(std::move(s2));
  std::string request = RandomBytes(5 * 1024 * 1024, 1);
  SpliceResult result;
  RunFor(io, [&]() -> awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    bool spliced = false;
    asio::co_spawn(
        ex,
        [&]() -> awaitable<void> {
          result = co_await Splice(left, right);
          spliced = true;
        },
        asio::detached);
    co_await HalfCloseExchange(client, server, request);
    asio::steady_timer t(ex);
    for (int i = 0; i < 400 && !spliced; ++i) {
      t.expires_after(std::chrono::milliseconds(5));
      co_await t.async_wait(asio::use_awaitable);
    }
    EXPECT_TRUE(spliced);
  }());
  EXPECT_FALSE(result.ec) << result.ec.message();
  EXPECT_EQ(result.a_to_b, request.size());
  EXPECT_EQ(result.b_to_a, 64u + 1 + std::to_string(request.size()).size());
}

// Splice takes its buffers only while bytes move (socket: after readability; other streams:
// a small read first, a pooled buffer while reads fill it). Trickles and bursts in both
// directions, over a pipe (no readability wait) and a socket, with the default buffer size and
// with one smaller than the small read, must arrive whole and in order.
TEST(SpliceTest, TricklesAndBurstsBetweenPipeAndSocket) {
  for (std::size_t buffer_size : {std::size_t{64 * 1024}, std::size_t{1000}}) {
    SCOPED_TRACE(buffer_size);
    asio::io_context io;
    auto [c2, s2] = test::TcpPair(io);
    TcpStream right(std::move(c2)), server(std::move(s2));
    std::unique_ptr<Stream> client, left;  // not a structured binding: lambdas capture them
    std::tie(client, left) = MakeStreamPair(io.get_executor(), 16 * 1024);
    std::string burst = RandomBytes(3 * 1024 * 1024, 2);
    SpliceResult result;
    std::size_t a_to_b_expected = 0;
    RunFor(io, [&]() -> awaitable<void> {
      auto ex = co_await asio::this_coro::executor;
      bool spliced = false;
      asio::co_spawn(
          ex,
          [&]() -> awaitable<void> {
            result = co_await Splice(*left, right, buffer_size);
            spliced = true;
          },
          asio::detached);
      asio::steady_timer t(ex);
      // Trickle: small writes with pauses, so that every read comes back short.
      std::string trickle;
      for (int i = 0; i < 20; ++i) {
        const std::string piece = "piece " + std::to_string(i) + ";";
        trickle += piece;
        co_await client->Write(asio::buffer(piece));
        t.expires_after(std::chrono::milliseconds(2));
        co_await t.async_wait(asio::use_awaitable);
      }
      std::string got(trickle.size(), '\0');
      std::size_t have = 0;
      while (have < got.size()) {
        IoResult r = co_await server.ReadSome(asio::buffer(got.data() + have, got.size() - have));
        EXPECT_FALSE(r.ec) << r.ec.message();
        if (r.ec) co_return;
        have += r.bytes;
      }
      EXPECT_EQ(got, trickle);
      // A burst from the socket side (read back whole), then one from the pipe side with
      // half-close both ways.
      asio::co_spawn(
          ex, [&]() -> awaitable<void> { co_await server.Write(asio::buffer(burst)); },
          asio::detached);
      std::string back(burst.size(), '\0');
      have = 0;
      while (have < back.size()) {
        IoResult r =
            co_await client->ReadSome(asio::buffer(back.data() + have, back.size() - have));
        EXPECT_FALSE(r.ec) << r.ec.message();
        if (r.ec) co_return;
        have += r.bytes;
      }
      EXPECT_EQ(test::Sha256Hex(back), test::Sha256Hex(burst));
      co_await HalfCloseExchange(*client, server, burst);
      a_to_b_expected = trickle.size() + burst.size();
      for (int i = 0; i < 400 && !spliced; ++i) {
        t.expires_after(std::chrono::milliseconds(5));
        co_await t.async_wait(asio::use_awaitable);
      }
      EXPECT_TRUE(spliced);
    }());
    EXPECT_FALSE(result.ec) << result.ec.message();
    EXPECT_EQ(result.a_to_b, a_to_b_expected);
    EXPECT_EQ(result.b_to_a, burst.size() + 64u + 1 + std::to_string(burst.size()).size());
  }
}

// Idle splices hold no data buffers (they used to own buffer_size bytes per direction, 128 KiB
// per splice): 200 splices between sockets, each having carried a few bytes both ways, must
// cost well under 32 KiB apiece. Half of them splice a pipe (no readability wait: a small
// first read) to a socket.
TEST(SpliceTest, IdleSplicesHoldNoBuffers) {
  constexpr int kSplices = 200;
  asio::io_context io;
  struct Held {
    std::unique_ptr<Stream> client, left, right, server;
  };
  std::vector<Held> held;
  const long before = test::ResidentKib();
  ASSERT_GT(before, 0);
  for (int i = 0; i < kSplices; ++i) {
    Held h;
    auto [c2, s2] = test::TcpPair(io);
    h.right = std::make_unique<TcpStream>(std::move(c2));
    h.server = std::make_unique<TcpStream>(std::move(s2));
    if (i % 2 == 0) {
      auto [c1, s1] = test::TcpPair(io);
      h.client = std::make_unique<TcpStream>(std::move(c1));
      h.left = std::make_unique<TcpStream>(std::move(s1));
    } else {
      std::tie(h.client, h.left) = MakeStreamPair(io.get_executor(), 16 * 1024);
    }
    held.push_back(std::move(h));
  }
  int done = 0;
  RunFor(io, [&]() -> awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    for (auto& h : held) {
      asio::co_spawn(
          ex, [&h]() -> awaitable<void> { co_await Splice(*h.left, *h.right); }, asio::detached);
    }
    for (auto& h : held) {
      static const std::string ping = "ping", pong = "pong!";
      co_await h.client->Write(asio::buffer(ping));
      char buf[8];
      IoResult r = co_await h.server->ReadSome(asio::buffer(buf));
      EXPECT_EQ(std::string(buf, r.bytes), ping);
      co_await h.server->Write(asio::buffer(pong));
      r = co_await h.client->ReadSome(asio::buffer(buf));
      EXPECT_EQ(std::string(buf, r.bytes), pong);
      ++done;
    }
  }());
  ASSERT_EQ(done, kSplices);
  const long after = test::ResidentKib();
  if (test::kAddressSanitizer) GTEST_SKIP() << test::kMemoryBoundUnderAsan;
  EXPECT_LT((after - before) / kSplices, 32)
      << "KiB per idle splice (" << before << " -> " << after << " KiB)";
  for (auto& h : held) {
    h.client->Reset();
    h.server->Reset();
  }
  io.run_for(std::chrono::milliseconds(200));
}

TEST(SpliceTest, ErrorOnOneSideResetsTheOther) {
  asio::io_context io;
  auto [c1, s1] = test::TcpPair(io);
  auto [c2, s2] = test::TcpPair(io);
  TcpStream client(std::move(c1)), left(std::move(s1)), right(std::move(c2)), server(std::move(s2));
  RunFor(io, [&]() -> awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    asio::co_spawn(
        ex,
        [&]() -> awaitable<void> {
          static const std::string hello = "hello";
          co_await server.Write(asio::buffer(hello));
          server.Reset();
        },
        asio::detached);
    SpliceResult r = co_await Splice(left, right);
    EXPECT_TRUE(r.ec);
    char buf[16];
    std::string got;
    for (;;) {
      IoResult rr = co_await client.ReadSome(asio::buffer(buf));
      if (rr.ec) {
        EXPECT_NE(rr.ec, asio::error::eof) << "the client must see a reset, not a clean end";
        break;
      }
      got.append(buf, rr.bytes);
    }
  }());
}

}  // namespace
}  // namespace tunnelkit
