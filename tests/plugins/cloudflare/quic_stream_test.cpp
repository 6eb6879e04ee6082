// QUIC streams as tunnelkit::Stream: concurrency, both directions of opening, half-close,
// resets, and flow control (a slow reader must not stall other streams).
#include <gtest/gtest.h>

#include "quic_test_env.hpp"

namespace tunnelkit::cloudflare::quic::test {
namespace {

TEST(QuicStreams, FiftyConcurrentStreamsEcho) {
  asio::io_context io;
  QuicServer server(io.get_executor(), Loopback(), ServerOptions(),
                    [](std::shared_ptr<QuicConnection> c) { ServeEcho(c); });
  RunWithDeadline(io, [&]() -> asio::awaitable<void> {
    auto conn =
        co_await QuicClient::Connect(io.get_executor(), server.local_endpoint(), ClientOptions());
    constexpr int kStreams = 50;
    int finished = 0;
    int matched = 0;
    for (int i = 0; i < kStreams; ++i) {
      asio::co_spawn(
          io,
          [&, i]() -> asio::awaitable<void> {
            const std::string payload = Pattern(100 * 1024 + i * 517, 100 + i);
            auto stream = co_await conn->OpenStream();
            asio::co_spawn(io, WriteAll(*stream, payload, 16 * 1024), asio::detached);
            std::string echoed = co_await ReadAll(*stream);
            if (tunnelkit::test::Sha256Hex(echoed) == tunnelkit::test::Sha256Hex(payload)) {
              ++matched;
            }
            ++finished;
          },
          asio::detached);
    }
    while (finished < kStreams) co_await Sleep(5ms);
    EXPECT_EQ(matched, kStreams);
    conn->Close(0, "done");
  });
}

TEST(QuicStreams, ServerOpenedStreamIsAcceptedByClient) {
  asio::io_context io;
  std::string reply_seen_by_server;
  QuicServer server(io.get_executor(), Loopback(), ServerOptions(),
                    [&](std::shared_ptr<QuicConnection> c) {
                      asio::co_spawn(
                          io,
                          [&, c]() -> asio::awaitable<void> {
                            auto s = co_await c->OpenStream();
                            co_await WriteAll(*s, "hello from server");
                            reply_seen_by_server = co_await ReadAll(*s);
                          },
                          asio::detached);
                    });
  RunWithDeadline(io, [&]() -> asio::awaitable<void> {
    auto conn =
        co_await QuicClient::Connect(io.get_executor(), server.local_endpoint(), ClientOptions());
    auto stream = co_await conn->AcceptStream();
    EXPECT_TRUE(stream);
    if (!stream) co_return;
    EXPECT_EQ(stream->id() % 4, 1);  // server-initiated bidirectional
    EXPECT_EQ(co_await ReadAll(*stream), "hello from server");
    co_await WriteAll(*stream, "reply from client");
    for (int i = 0; i < 200 && reply_seen_by_server.empty(); ++i) co_await Sleep(5ms);
    EXPECT_EQ(reply_seen_by_server, "reply from client");
  });
}

TEST(QuicStreams, HalfCloseKeepsTheOtherDirectionOpen) {
  asio::io_context io;
  std::string server_read;
  boost::system::error_code server_eof;
  QuicServer server(io.get_executor(), Loopback(), ServerOptions(),
                    [&](std::shared_ptr<QuicConnection> c) {
                      c->SetStreamHandler([&](std::shared_ptr<QuicStream> s) {
                        asio::co_spawn(
                            io,
                            [&, s]() -> asio::awaitable<void> {
                              server_read = co_await ReadAll(*s);
                              // The client finished writing; we can still answer.
                              co_await Sleep(50ms);
                              co_await WriteAll(*s, "pong");
                              std::array<char, 8> b;
                              server_eof = (co_await s->ReadSome(asio::buffer(b))).ec;
                            },
                            asio::detached);
                      });
                    });
  RunWithDeadline(io, [&]() -> asio::awaitable<void> {
    auto conn =
        co_await QuicClient::Connect(io.get_executor(), server.local_endpoint(), ClientOptions());
    auto stream = co_await conn->OpenStream();
    co_await WriteAll(*stream, "ping");
    // No writes after FIN.
    auto late = co_await stream->Write(asio::buffer("x", 1));
    EXPECT_EQ(late.ec, make_error_code(QuicErrc::kStreamClosed));
    EXPECT_EQ(co_await ReadAll(*stream), "pong");
    // EOF is sticky.
    std::array<char, 8> b;
    EXPECT_EQ((co_await stream->ReadSome(asio::buffer(b))).ec, asio::error::eof);
    EXPECT_EQ(server_read, "ping");
    EXPECT_EQ(server_eof, asio::error::eof);
    EXPECT_NE(stream->Describe().find("stream 0"), std::string::npos) << stream->Describe();
  });
}

TEST(QuicStreams, ResetReachesThePeer) {
  asio::io_context io;
  boost::system::error_code server_read_error;
  bool server_done = false;
  QuicServer server(io.get_executor(), Loopback(), ServerOptions(),
                    [&](std::shared_ptr<QuicConnection> c) {
                      c->SetStreamHandler([&](std::shared_ptr<QuicStream> s) {
                        asio::co_spawn(
                            io,
                            [&, s]() -> asio::awaitable<void> {
                              std::array<char, 64> b;
                              for (;;) {
                                auto r = co_await s->ReadSome(asio::buffer(b));
                                if (r.ec) {
                                  server_read_error = r.ec;
                                  break;
                                }
                              }
                              server_done = true;
                            },
                            asio::detached);
                      });
                    });
  RunWithDeadline(io, [&]() -> asio::awaitable<void> {
    auto conn =
        co_await QuicClient::Connect(io.get_executor(), server.local_endpoint(), ClientOptions());
    auto stream = co_await conn->OpenStream();
    co_await WriteAll(*stream, "some data", 64, false);
    co_await Sleep(20ms);
    stream->Reset(9);
    std::array<char, 8> b;
    EXPECT_EQ((co_await stream->ReadSome(asio::buffer(b))).ec,
              make_error_code(QuicErrc::kStreamClosed));
    for (int i = 0; i < 200 && !server_done; ++i) co_await Sleep(5ms);
    EXPECT_EQ(server_read_error, make_error_code(QuicErrc::kStreamReset));
    // The connection itself is fine.
    EXPECT_TRUE(conn->is_open());
  });
}

TEST(QuicStreams, PeerStopSendingFailsWrites) {
  asio::io_context io;
  QuicServer server(io.get_executor(), Loopback(), ServerOptions(),
                    [&](std::shared_ptr<QuicConnection> c) {
                      c->SetStreamHandler([&](std::shared_ptr<QuicStream> s) {
                        asio::co_spawn(
                            io,
                            [s]() -> asio::awaitable<void> {
                              std::array<char, 1> b;
                              co_await s->ReadSome(asio::buffer(b));
                              s->Reset(5);  // STOP_SENDING + RESET_STREAM
                            },
                            asio::detached);
                      });
                    });
  RunWithDeadline(io, [&]() -> asio::awaitable<void> {
    auto conn =
        co_await QuicClient::Connect(io.get_executor(), server.local_endpoint(), ClientOptions());
    auto stream = co_await conn->OpenStream();
    const std::string block(16 * 1024, 'z');
    boost::system::error_code write_error;
    for (int i = 0; i < 2000 && !write_error; ++i) {
      write_error = (co_await stream->Write(asio::buffer(block))).ec;
      if (!write_error && i % 8 == 0) co_await Sleep(1ms);
    }
    EXPECT_EQ(write_error, make_error_code(QuicErrc::kStopSending));
    std::array<char, 8> b;
    EXPECT_EQ((co_await stream->ReadSome(asio::buffer(b))).ec,
              make_error_code(QuicErrc::kStreamReset));
  });
}

TEST(QuicStreams, PeerThatStopsReadingFailsAFlowBlockedWriter) {
  asio::io_context io;
  auto server_options = ServerOptions();
  server_options.transport.stream_receive_window = 64 * 1024;
  QuicServer server(io.get_executor(), Loopback(), server_options,
                    [&](std::shared_ptr<QuicConnection> c) {
                      c->SetStreamHandler([&](std::shared_ptr<QuicStream> s) {
                        asio::co_spawn(
                            io,
                            [s]() -> asio::awaitable<void> {
                              std::array<char, 1> b;
                              co_await s->ReadSome(asio::buffer(b));
                              co_await WriteAll(*s, "bye");
                              co_await Sleep(50ms);  // let the client fill the window
                              // Dropping the handle after our FIN: STOP_SENDING only.
                            },
                            asio::detached);
                      });
                    });
  RunWithDeadline(io, [&]() -> asio::awaitable<void> {
    auto conn =
        co_await QuicClient::Connect(io.get_executor(), server.local_endpoint(), ClientOptions());
    auto stream = co_await conn->OpenStream();
    std::string reply;
    asio::co_spawn(
        io, [&]() -> asio::awaitable<void> { reply = co_await ReadAll(*stream); }, asio::detached);
    const std::string block(16 * 1024, 'z');
    boost::system::error_code write_error;
    std::size_t written = 0;
    while (!write_error && written < (64u << 20)) {
      auto w = co_await stream->Write(asio::buffer(block));
      write_error = w.ec;
      written += w.bytes;
    }
    EXPECT_EQ(write_error, make_error_code(QuicErrc::kStopSending));
    EXPECT_LT(written, 1u << 20);
    EXPECT_EQ(reply, "bye");
  });
}

TEST(QuicStreams, SlowReaderDoesNotBlockAnotherStream) {
  asio::io_context io;
  auto server_options = ServerOptions();
  server_options.transport.stream_receive_window = 64 * 1024;
  server_options.transport.connection_receive_window = 1024 * 1024;
  bool release_slow = false;
  std::string slow_received;
  bool slow_done = false;
  QuicServer server(io.get_executor(), Loopback(), server_options,
                    [&](std::shared_ptr<QuicConnection> c) {
                      c->SetStreamHandler([&](std::shared_ptr<QuicStream> s) {
                        asio::co_spawn(
                            io,
                            [&, s]() -> asio::awaitable<void> {
                              char tag = 0;
                              auto r = co_await s->ReadSome(asio::buffer(&tag, 1));
                              if (r.ec) co_return;
                              if (tag == 'E') {
                                co_await EchoStream(s);
                                co_return;
                              }
                              while (!release_slow)
                                co_await Sleep(5ms);  // a reader that does not read
                              slow_received = co_await ReadAll(*s);
                              slow_done = true;
                            },
                            asio::detached);
                      });
                    });
  RunWithDeadline(io, [&]() -> asio::awaitable<void> {
    auto conn =
        co_await QuicClient::Connect(io.get_executor(), server.local_endpoint(), ClientOptions());
    // Stream A: 2 MB towards a reader that does not read.
    const std::string slow_payload = Pattern(2 * 1024 * 1024, 7);
    auto a = co_await conn->OpenStream();
    co_await WriteAll(*a, "S", 1, false);
    std::size_t a_written = 0;
    bool a_done = false;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          for (std::size_t off = 0; off < slow_payload.size(); off += 16 * 1024) {
            auto w = co_await a->Write(asio::buffer(slow_payload.data() + off, 16 * 1024));
            if (w.ec) co_return;
            a_written += w.bytes;
          }
          co_await a->ShutdownWrite();
          a_done = true;
        },
        asio::detached);
    // Stream B: a 1 MB echo must complete meanwhile.
    const std::string fast_payload = Pattern(1024 * 1024, 8);
    auto b = co_await conn->OpenStream();
    asio::co_spawn(io, WriteAll(*b, "E" + fast_payload), asio::detached);
    std::string echoed = co_await ReadAll(*b);
    EXPECT_EQ(tunnelkit::test::Sha256Hex(echoed), tunnelkit::test::Sha256Hex(fast_payload));
    // A is held back by its stream window (64 KB), not by buffering everything: what its
    // writer got rid of is the window, the 128 KB write-behind and one write at most.
    EXPECT_FALSE(a_done);
    EXPECT_LE(a_written, (64u + 128u + 16u) * 1024) << "the slow stream's sender was not held back";
    // Once the reader reads, A completes.
    release_slow = true;
    while (!slow_done) co_await Sleep(5ms);
    EXPECT_TRUE(a_done);
    EXPECT_EQ(slow_received.size(), slow_payload.size());
    EXPECT_EQ(tunnelkit::test::Sha256Hex(slow_received), tunnelkit::test::Sha256Hex(slow_payload));
  });
}

}  // namespace
}  // namespace tunnelkit::cloudflare::quic::test
