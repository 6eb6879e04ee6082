// Flow control and head-of-line blocking: one stalled reader must not stall the others, and the
// session's own buffers stay within the configured windows.
#include <algorithm>

#include <gtest/gtest.h>
#include <boost/asio/steady_timer.hpp>

#include "mux_test_util.hpp"
#include "test_codec.hpp"
#include "tunnelkit/mux/memory_transport.hpp"
#include "tunnelkit/mux/session.hpp"

namespace tunnelkit::mux::test {
namespace {

using namespace std::chrono_literals;

enum class Wire { kMemory, kTcp };

std::pair<std::unique_ptr<Stream>, std::unique_ptr<Stream>> Transports(asio::io_context& io,
                                                                       Wire wire) {
  if (wire == Wire::kTcp) return TcpPair(io);
  auto pair = MemoryTransport::Pair(io.get_executor(), 256 * 1024);
  return {std::move(pair.first), std::move(pair.second)};
}

MuxConfig Config(IdParity ids, const char* label) {
  MuxConfig config;
  config.local_ids = ids;
  config.label = label;
  return config;
}

void Drain(asio::io_context& io, std::initializer_list<std::shared_ptr<MuxSession>> sessions) {
  for (const auto& s : sessions) s->Close("test over");
  io.restart();
  io.run_for(2s);
}

class HeadOfLineTest : public ::testing::TestWithParam<Wire> {};

// Stream A's reader never reads; stream B moves 100 MB through the same session.
TEST_P(HeadOfLineTest, StalledReaderDoesNotBlockOtherStreams) {
  asio::io_context io;
  auto [a, b] = Transports(io, GetParam());
  const std::uint32_t window = kInitialStreamWindow;  // 256 KiB per stream
  MuxConfig client_config = Config(IdParity::kOdd, "client");
  MuxConfig server_config = Config(IdParity::kEven, "server");
  client_config.stream_window = server_config.stream_window = window;
  auto client = MuxSession::Create(std::move(a), std::make_unique<TestCodec>(), client_config);
  auto server = MuxSession::Create(std::move(b), std::make_unique<TestCodec>(), server_config);
  client->Start();
  server->Start();

  constexpr std::size_t kBulk = 100 * 1024 * 1024;
  constexpr int kStreams = 2;
  // What the mux may hold per session: every stream's window (received-but-unread on the
  // receiver, credit-limited queue on the sender) plus one frame of slack per stream.
  const std::size_t bound = kStreams * (window + 64 * 1024);
  std::size_t client_peak = 0, server_peak = 0;
  std::size_t stalled_written = 0;
  bool sampling = true;  // outlives the body: the sampler may wake once more after it ends
  Received bulk;
  std::string bulk_sent_sha;

  const auto started = std::chrono::steady_clock::now();
  RunWithDeadline(
      io,
      [&]() -> asio::awaitable<void> {
        boost::system::error_code ec;
        auto stalled = client->Open(Priority::kNormal, ec);
        auto busy = client->Open(Priority::kNormal, ec);
        auto stalled_peer = co_await server->Accept();  // accepted, never read
        auto busy_peer = co_await server->Accept();
        EXPECT_EQ(stalled_peer->id(), stalled->id());

        asio::co_spawn(
            io,
            [&]() -> asio::awaitable<void> {
              asio::steady_timer tick(io);
              while (sampling) {
                client_peak = std::max(client_peak, client->BufferedBytes());
                server_peak = std::max(server_peak, server->BufferedBytes());
                tick.expires_after(1ms);
                co_await tick.async_wait(asio::use_awaitable);
              }
            },
            asio::detached);
        // A writer that keeps pushing into the stalled stream: it must end up suspended.
        asio::co_spawn(
            io,
            [&, stalled]() -> asio::awaitable<void> {
              std::vector<std::uint8_t> chunk(16 * 1024, 0xAB);
              while (stalled_written < 8 * 1024 * 1024) {
                IoResult r = co_await stalled->Write(asio::buffer(chunk));
                if (r.ec) co_return;
                stalled_written += r.bytes;
              }
            },
            asio::detached);
        asio::co_spawn(
            io,
            [&, busy]() -> asio::awaitable<void> {
              bulk_sent_sha = co_await SendPattern(*busy, 2024, kBulk);
            },
            asio::detached);

        bulk = co_await ReceiveAll(*busy_peer);
        sampling = false;
        client_peak = std::max(client_peak, client->BufferedBytes());
        server_peak = std::max(server_peak, server->BufferedBytes());
        // Stream A: exactly one window crossed the wire and waits unread at the server.
        EXPECT_EQ(stalled_peer->buffered(), window);
        EXPECT_EQ(server->BufferedBytes(), window);
        EXPECT_LE(stalled_written, 2 * window);  // one window sent + at most one queued
      },
      120s);
  const auto elapsed = std::chrono::steady_clock::now() - started;

  EXPECT_EQ(bulk.end, asio::error::eof);
  EXPECT_EQ(bulk.bytes, kBulk);
  EXPECT_EQ(bulk.sha256, PatternSha(2024, kBulk));
  EXPECT_EQ(bulk.sha256, bulk_sent_sha);
  EXPECT_LE(client_peak, bound) << "client session buffered too much";
  EXPECT_LE(server_peak, bound) << "server session buffered too much";
  EXPECT_LT(elapsed, 60s);
  std::printf("[ hol ] 100 MB in %.2f s; peak buffered client %zu B, server %zu B (bound %zu)\n",
              std::chrono::duration<double>(elapsed).count(), client_peak, server_peak, bound);
  Drain(io, {client, server});
}

INSTANTIATE_TEST_SUITE_P(Wires, HeadOfLineTest, ::testing::Values(Wire::kMemory, Wire::kTcp),
                         [](const auto& info) {
                           return info.param == Wire::kMemory ? "Memory" : "Tcp";
                         });

// A larger configured window is granted right after the stream opens.
TEST(FlowControlTest, LargerWindowIsGrantedAtOpen) {
  asio::io_context io;
  auto [a, b] = Transports(io, Wire::kMemory);
  MuxConfig client_config = Config(IdParity::kOdd, "client");
  MuxConfig server_config = Config(IdParity::kEven, "server");
  server_config.stream_window = 1024 * 1024;
  auto client = MuxSession::Create(std::move(a), std::make_unique<TestCodec>(), client_config);
  auto server = MuxSession::Create(std::move(b), std::make_unique<TestCodec>(), server_config);
  client->Start();
  server->Start();
  std::size_t written = 0;
  RunWithDeadline(io, [&]() -> asio::awaitable<void> {
    boost::system::error_code ec;
    auto stream = client->Open(Priority::kNormal, ec);
    auto peer = co_await server->Accept();
    asio::co_spawn(
        io,
        [&, stream]() -> asio::awaitable<void> {
          std::vector<std::uint8_t> chunk(8 * 1024, 1);
          while (true) {
            IoResult r = co_await stream->Write(asio::buffer(chunk));
            if (r.ec) co_return;
            written += r.bytes;
          }
        },
        asio::detached);
    asio::steady_timer settle(io);
    settle.expires_after(300ms);
    co_await settle.async_wait(asio::use_awaitable);
    EXPECT_EQ(peer->buffered(), 1024u * 1024u);
    EXPECT_LE(server->BufferedBytes(), 1024u * 1024u);
  });
  Drain(io, {client, server});
}

// Without WindowUpdate on the wire (FerroTunnel's own wire), a stalled stream stops the
// session's reader once its buffer is full: memory stays bounded, the transport pushes back,
// and everything flows again once the reader resumes.
TEST(FlowControlTest, WithoutCreditBuffersStayBoundedAndDataSurvives) {
  asio::io_context io;
  auto [a, b] = Transports(io, Wire::kMemory);
  MuxConfig client_config = Config(IdParity::kOdd, "client");
  MuxConfig server_config = Config(IdParity::kEven, "server");
  server_config.stream_window = 128 * 1024;
  client_config.max_send_queued = server_config.max_send_queued = 512 * 1024;
  auto client = MuxSession::Create(std::move(a), std::make_unique<TestCodec>(false), client_config);
  auto server = MuxSession::Create(std::move(b), std::make_unique<TestCodec>(false), server_config);
  EXPECT_FALSE(client->wire_flow_control());
  client->Start();
  server->Start();
  constexpr std::size_t kSize = 8 * 1024 * 1024;
  std::size_t server_peak = 0, client_peak = 0;
  RunWithDeadline(
      io,
      [&]() -> asio::awaitable<void> {
        boost::system::error_code ec;
        auto slow = client->Open(Priority::kNormal, ec);
        auto other = client->Open(Priority::kNormal, ec);
        auto slow_peer = co_await server->Accept();
        auto other_peer = co_await server->Accept();
        asio::co_spawn(io, SendPattern(*slow, 1, kSize), asio::detached);
        asio::co_spawn(io, SendPattern(*other, 2, kSize), asio::detached);
        // Nobody reads for a while: the buffers must level off.
        asio::steady_timer tick(io);
        for (int i = 0; i < 200; ++i) {
          server_peak = std::max(server_peak, server->BufferedBytes());
          client_peak = std::max(client_peak, client->BufferedBytes());
          tick.expires_after(1ms);
          co_await tick.async_wait(asio::use_awaitable);
        }
        EXPECT_TRUE(server->engine().ReadPaused());
        // Now read both to the end.
        Received got_other;
        bool other_done = false;
        asio::co_spawn(
            io,
            [&]() -> asio::awaitable<void> {
              got_other = co_await ReceiveAll(*other_peer);
              other_done = true;
            },
            asio::detached);
        Received got_slow = co_await ReceiveAll(*slow_peer);
        while (!other_done) {
          tick.expires_after(1ms);
          co_await tick.async_wait(asio::use_awaitable);
        }
        EXPECT_EQ(got_slow.sha256, PatternSha(1, kSize));
        EXPECT_EQ(got_other.sha256, PatternSha(2, kSize));
      },
      60s);
  // Receiver: one stream over its window by at most one frame, plus what the other stream got
  // before the reader paused (also bounded by the window + a frame).
  EXPECT_LE(server_peak, 2 * (128 * 1024 + 64 * 1024));
  EXPECT_LE(client_peak, 512 * 1024 + 64 * 1024);
  Drain(io, {client, server});
}

// A peer that ignores our window breaks the protocol: the session closes with the reason.
TEST(FlowControlTest, PeerExceedingTheWindowClosesTheSession) {
  asio::io_context io;
  std::unique_ptr<MemoryTransport> a, raw;  // not a structured binding: lambdas capture raw
  std::tie(a, raw) = MemoryTransport::Pair(io.get_executor(), 1024 * 1024);
  auto session = MuxSession::Create(std::move(a), std::make_unique<TestCodec>(),
                                    Config(IdParity::kOdd, "victim"));
  session->Start();
  RunWithDeadline(io, [&]() -> asio::awaitable<void> {
    TestCodec codec;
    std::vector<std::uint8_t> wire;
    Frame open;
    open.kind = FrameKind::kOpen;
    open.stream_id = 2;
    codec.Encode(open, wire);
    std::vector<std::uint8_t> payload(64 * 1024, 7);
    for (int i = 0; i < 5; ++i) {  // 320 KiB > 256 KiB initial window
      Frame data;
      data.kind = FrameKind::kData;
      data.stream_id = 2;
      data.payload = payload;
      codec.Encode(data, wire);
    }
    co_await raw->Write(asio::buffer(wire));
    co_await session->WaitClosed();
    EXPECT_NE(session->close_reason().find("exceeded the flow-control window on stream 2"),
              std::string::npos)
        << session->close_reason();
  });
  session->Close("test over");
  io.restart();
  io.run_for(1s);
}

TEST(CodecErrorTest, GarbageClosesTheSessionWithTheCodecsReason) {
  asio::io_context io;
  std::unique_ptr<MemoryTransport> a, raw;  // not a structured binding: lambdas capture raw
  std::tie(a, raw) = MemoryTransport::Pair(io.get_executor(), 1024 * 1024);
  auto session = MuxSession::Create(std::move(a), std::make_unique<TestCodec>(),
                                    Config(IdParity::kOdd, "victim"));
  std::string closed_with;
  session->SetClosedHandler([&](const std::string& reason) { closed_with = reason; });
  session->Start();
  RunWithDeadline(io, [&]() -> asio::awaitable<void> {
    boost::system::error_code ec;
    auto stream = session->Open(Priority::kNormal, ec);
    // A frame header with kind 99.
    const std::uint8_t garbage[] = {0, 0, 0, 10, 99, 0, 0, 0, 1, 0, 0, 0, 0, 0};
    co_await raw->Write(asio::buffer(garbage));
    char c;
    IoResult r = co_await stream->ReadSome(asio::buffer(&c, 1));
    EXPECT_EQ(r.ec, asio::error::connection_aborted);
    EXPECT_EQ(session->close_reason(), "codec error: unknown frame kind 99");
    EXPECT_EQ(stream->error_reason(), "codec error: unknown frame kind 99");
    // The raw peer sees the transport reset.
    std::uint8_t buf[64];
    IoResult rr{};
    do {
      rr = co_await raw->ReadSome(asio::buffer(buf));
    } while (!rr.ec);
    EXPECT_EQ(rr.ec, asio::error::connection_reset);
  });
  io.restart();
  io.run_for(100ms);
  EXPECT_EQ(closed_with, "codec error: unknown frame kind 99");
}

TEST(CodecErrorTest, OversizedPartialFrameClosesTheSession) {
  asio::io_context io;
  std::unique_ptr<MemoryTransport> a, raw;  // not a structured binding: lambdas capture raw
  std::tie(a, raw) = MemoryTransport::Pair(io.get_executor(), 1024 * 1024);
  MuxConfig config = Config(IdParity::kOdd, "victim");
  config.max_frame_size = 4096;
  auto session = MuxSession::Create(std::move(a), std::make_unique<TestCodec>(), config);
  session->Start();
  RunWithDeadline(io, [&]() -> asio::awaitable<void> {
    // Announces a 100 KiB frame (legal for the codec) and sends 8 KiB of it.
    std::vector<std::uint8_t> wire{0, 1, 144, 0, 1, 0, 0, 0, 3, 1, 0, 0, 0, 0};
    wire.resize(8 * 1024, 0);
    co_await raw->Write(asio::buffer(wire));
    co_await session->WaitClosed();
    EXPECT_EQ(session->close_reason(), "frame larger than 4096 bytes");
  });
  io.restart();
  io.run_for(100ms);
}

}  // namespace
}  // namespace tunnelkit::mux::test
