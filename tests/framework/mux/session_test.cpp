// MuxSession end to end over the in-memory transport and over real TCP on 127.0.0.1.
#include <optional>
#include <vector>

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

struct Sessions {
  std::shared_ptr<MuxSession> client;
  std::shared_ptr<MuxSession> server;
};

MuxConfig ClientConfig() {
  MuxConfig config;
  config.local_ids = IdParity::kOdd;
  config.label = "client";
  return config;
}

MuxConfig ServerConfig() {
  MuxConfig config;
  config.local_ids = IdParity::kEven;
  config.label = "server";
  return config;
}

class SessionTest : public ::testing::TestWithParam<Wire> {
 protected:
  Sessions Start(MuxConfig client_config = ClientConfig(), MuxConfig server_config = ServerConfig(),
                 bool window_updates = true) {
    std::unique_ptr<Stream> a, b;
    if (GetParam() == Wire::kMemory) {
      auto pair = MemoryTransport::Pair(io_.get_executor(), 128 * 1024);
      a = std::move(pair.first);
      b = std::move(pair.second);
    } else {
      auto pair = TcpPair(io_);
      a = std::move(pair.first);
      b = std::move(pair.second);
    }
    Sessions s;
    s.client = MuxSession::Create(std::move(a), std::make_unique<TestCodec>(window_updates),
                                  client_config);
    s.server = MuxSession::Create(std::move(b), std::make_unique<TestCodec>(window_updates),
                                  server_config);
    s.client->Start();
    s.server->Start();
    sessions_ = s;
    return s;
  }

  void TearDown() override {
    if (sessions_.client) sessions_.client->Close("test over");
    if (sessions_.server) sessions_.server->Close("test over");
    io_.restart();
    io_.run_for(2s);  // lets the reader/writer coroutines finish
  }

  asio::io_context io_;
  Sessions sessions_;
};

asio::awaitable<void> Echo(std::shared_ptr<MuxStream> stream) {
  std::vector<std::uint8_t> buf(16 * 1024);
  while (true) {
    IoResult r = co_await stream->ReadSome(asio::buffer(buf));
    if (r.ec) break;
    IoResult w = co_await stream->Write(asio::buffer(buf.data(), r.bytes));
    if (w.ec) co_return;
  }
  co_await stream->ShutdownWrite();
}

asio::awaitable<void> EchoServer(std::shared_ptr<MuxSession> server) {
  while (auto stream = co_await server->Accept()) {
    asio::co_spawn(server->get_executor(), Echo(stream), asio::detached);
  }
}

TEST_P(SessionTest, OpenEchoClose) {
  auto s = Start();
  RunWithDeadline(io_, [&]() -> asio::awaitable<void> {
    asio::co_spawn(io_, EchoServer(s.server), asio::detached);
    boost::system::error_code ec;
    const std::string meta = "GET /";
    auto stream = s.client->Open(
        Priority::kNormal,
        std::span(reinterpret_cast<const std::uint8_t*>(meta.data()), meta.size()), ec);
    EXPECT_FALSE(ec);
    EXPECT_EQ(stream->id(), 1u);
    EXPECT_EQ(stream->Describe(), "client stream 1");
    const std::string hello = "hello, multiplexer";
    IoResult w = co_await stream->Write(asio::buffer(hello));
    EXPECT_FALSE(w.ec);
    EXPECT_EQ(co_await stream->ShutdownWrite(), boost::system::error_code{});
    std::string got;
    char buf[4];
    while (true) {
      IoResult r = co_await stream->ReadSome(asio::buffer(buf));
      if (r.ec) {
        EXPECT_EQ(r.ec, asio::error::eof);
        break;
      }
      got.append(buf, r.bytes);
    }
    EXPECT_EQ(got, hello);
    // Both directions closed: the stream left both tables.
    EXPECT_EQ(s.client->stream_count(), 0u);
  });
  EXPECT_EQ(s.server->stream_count(), 0u);
}

TEST_P(SessionTest, OpenMetadataReachesAcceptor) {
  auto s = Start();
  RunWithDeadline(io_, [&]() -> asio::awaitable<void> {
    boost::system::error_code ec;
    const std::vector<std::uint8_t> meta{1, 2, 3, 0, 255};
    auto stream = s.client->Open(Priority::kHigh, meta, ec);
    auto accepted = co_await s.server->Accept();
    EXPECT_TRUE(accepted);
    EXPECT_EQ(accepted->id(), stream->id());
    EXPECT_EQ(accepted->priority(), Priority::kHigh);
    EXPECT_FALSE(accepted->opened_locally());
    EXPECT_EQ(std::vector<std::uint8_t>(accepted->open_metadata().begin(),
                                        accepted->open_metadata().end()),
              meta);
  });
}

TEST_P(SessionTest, HalfCloseKeepsTheOtherDirectionOpen) {
  auto s = Start();
  RunWithDeadline(io_, [&]() -> asio::awaitable<void> {
    boost::system::error_code ec;
    auto stream = s.client->Open(Priority::kNormal, ec);
    const std::string request = "request";
    co_await stream->Write(asio::buffer(request));
    co_await stream->ShutdownWrite();
    // Writing after our own half-close is refused.
    IoResult late = co_await stream->Write(asio::buffer(request));
    EXPECT_EQ(late.ec, asio::error::broken_pipe);

    auto peer = co_await s.server->Accept();
    Received req = co_await ReceiveAll(*peer);
    EXPECT_EQ(req.end, asio::error::eof);
    EXPECT_EQ(req.bytes, request.size());
    // The server still answers with 3 MB after the client finished writing.
    const std::size_t size = 3 * 1024 * 1024;
    std::string sent_sha;
    asio::co_spawn(
        io_, [&]() -> asio::awaitable<void> { sent_sha = co_await SendPattern(*peer, 7, size); },
        asio::detached);
    Received resp = co_await ReceiveAll(*stream);
    EXPECT_EQ(resp.end, asio::error::eof);
    EXPECT_EQ(resp.bytes, size);
    EXPECT_EQ(resp.sha256, PatternSha(7, size));
  });
}

TEST_P(SessionTest, ResetFailsBothEnds) {
  auto s = Start();
  RunWithDeadline(io_, [&]() -> asio::awaitable<void> {
    boost::system::error_code ec;
    auto stream = s.client->Open(Priority::kNormal, ec);
    co_await stream->Write(asio::buffer(std::string("x")));
    auto peer = co_await s.server->Accept();
    char c;
    IoResult first = co_await peer->ReadSome(asio::buffer(&c, 1));
    EXPECT_EQ(first.bytes, 1u);
    stream->Reset(42, "client gave up");
    IoResult r = co_await peer->ReadSome(asio::buffer(&c, 1));
    EXPECT_EQ(r.ec, asio::error::connection_reset);
    EXPECT_EQ(peer->error_reason(), "client gave up");
    IoResult w = co_await peer->Write(asio::buffer(&c, 1));
    EXPECT_EQ(w.ec, asio::error::connection_reset);
    IoResult mine = co_await stream->ReadSome(asio::buffer(&c, 1));
    EXPECT_EQ(mine.ec, asio::error::operation_aborted);
    EXPECT_EQ(s.client->stream_count(), 0u);
    EXPECT_EQ(s.server->stream_count(), 0u);
  });
}

// A writer waiting for credit (its peer reads nothing) fails once the peer resets the stream,
// also after the peer had shut its own side down (a reset must still reach the writer then).
TEST_P(SessionTest, WriterWaitingForCreditFailsWhenThePeerResets) {
  auto s = Start();
  RunWithDeadline(io_, [&]() -> asio::awaitable<void> {
    boost::system::error_code ec;
    auto stream = s.client->Open(Priority::kNormal, ec);
    co_await stream->Write(asio::buffer(std::string("x")));
    auto peer = co_await s.server->Accept();
    EXPECT_FALSE(co_await peer->ShutdownWrite());
    auto written = std::make_shared<std::optional<IoResult>>();
    asio::co_spawn(
        io_,
        [written, stream]() -> asio::awaitable<void> {
          const std::vector<std::uint8_t> big(16 * 1024 * 1024, 7);
          *written = co_await stream->Write(asio::buffer(big));
        },
        asio::detached);
    asio::steady_timer timer(io_);
    timer.expires_after(100ms);
    co_await timer.async_wait(asio::use_awaitable);
    EXPECT_FALSE(written->has_value()) << "the writer should be waiting for credit";
    peer->Reset();
    for (int i = 0; i < 100 && !*written; ++i) {
      timer.expires_after(10ms);
      co_await timer.async_wait(asio::use_awaitable);
    }
    EXPECT_TRUE(written->has_value()) << "the writer still waits after the peer's reset";
    if (*written) {
      EXPECT_EQ((*written)->ec, asio::error::connection_reset);
    }
  });
}

TEST_P(SessionTest, ResetWakesAPendingRead) {
  auto s = Start();
  RunWithDeadline(io_, [&]() -> asio::awaitable<void> {
    boost::system::error_code ec;
    auto stream = s.client->Open(Priority::kNormal, ec);
    co_await stream->Write(asio::buffer(std::string("x")));
    auto peer = co_await s.server->Accept();
    asio::steady_timer later(io_);
    later.expires_after(20ms);
    later.async_wait([&](boost::system::error_code) { peer->Reset(); });
    char buf[8];
    IoResult r = co_await stream->ReadSome(asio::buffer(buf));  // suspended until the reset
    EXPECT_EQ(r.ec, asio::error::connection_reset);
  });
}

TEST_P(SessionTest, ManyConcurrentStreams) {
  auto s = Start();
  constexpr int kStreams = 100;
  constexpr std::size_t kBytes = 100 * 1024;
  RunWithDeadline(
      io_,
      [&]() -> asio::awaitable<void> {
        asio::co_spawn(io_, EchoServer(s.server), asio::detached);
        int finished = 0;
        asio::steady_timer all_done(io_);
        for (int i = 0; i < kStreams; ++i) {
          boost::system::error_code ec;
          auto stream = s.client->Open(static_cast<Priority>(i % 4), ec);
          EXPECT_FALSE(ec);
          asio::co_spawn(
              io_,
              [&, stream, i]() -> asio::awaitable<void> {
                asio::co_spawn(io_, SendPattern(*stream, 100 + i, kBytes, 10000), asio::detached);
                Received got = co_await ReceiveAll(*stream);
                EXPECT_EQ(got.end, asio::error::eof);
                EXPECT_EQ(got.bytes, kBytes) << "stream " << stream->id();
                EXPECT_EQ(got.sha256, PatternSha(100 + i, kBytes)) << "stream " << stream->id();
                if (++finished == kStreams) all_done.cancel();
              },
              asio::detached);
        }
        all_done.expires_after(60s);
        boost::system::error_code ec;
        co_await all_done.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        EXPECT_EQ(finished, kStreams);
      },
      60s);
}

TEST_P(SessionTest, IdsFollowEachSidesParity) {
  auto s = Start();
  RunWithDeadline(io_, [&]() -> asio::awaitable<void> {
    boost::system::error_code ec;
    std::vector<StreamId> client_ids, server_ids;
    std::vector<std::shared_ptr<MuxStream>> keep;
    for (int i = 0; i < 3; ++i) {
      keep.push_back(s.client->Open(Priority::kNormal, ec));
      client_ids.push_back(keep.back()->id());
      keep.push_back(s.server->Open(Priority::kNormal, ec));
      server_ids.push_back(keep.back()->id());
    }
    EXPECT_EQ(client_ids, (std::vector<StreamId>{1, 3, 5}));
    EXPECT_EQ(server_ids, (std::vector<StreamId>{2, 4, 6}));
    for (int i = 0; i < 3; ++i) {
      auto a = co_await s.server->Accept();
      EXPECT_EQ(a->id() % 2, 1u);
      auto b = co_await s.client->Accept();
      EXPECT_EQ(b->id() % 2, 0u);
    }
  });
}

TEST_P(SessionTest, PeerUsingOurParityClosesTheSession) {
  MuxConfig both_odd = ServerConfig();
  both_odd.local_ids = IdParity::kOdd;
  auto s = Start(ClientConfig(), both_odd);
  RunWithDeadline(io_, [&]() -> asio::awaitable<void> {
    boost::system::error_code ec;
    auto stream = s.client->Open(Priority::kNormal, ec);
    co_await s.server->WaitClosed();
    EXPECT_NE(s.server->close_reason().find("id parity"), std::string::npos)
        << s.server->close_reason();
    co_await s.client->WaitClosed();
    char c;
    IoResult r = co_await stream->ReadSome(asio::buffer(&c, 1));
    EXPECT_EQ(r.ec, asio::error::connection_aborted);
  });
}

TEST_P(SessionTest, StreamCapRefusesExcessOpens) {
  MuxConfig server = ServerConfig();
  server.max_streams = 3;
  auto s = Start(ClientConfig(), server);
  RunWithDeadline(io_, [&]() -> asio::awaitable<void> {
    boost::system::error_code ec;
    std::vector<std::shared_ptr<MuxStream>> streams;
    for (int i = 0; i < 5; ++i) streams.push_back(s.client->Open(Priority::kNormal, ec));
    std::vector<std::shared_ptr<MuxStream>> accepted;
    for (int i = 0; i < 3; ++i) accepted.push_back(co_await s.server->Accept());
    char c;
    for (int i = 3; i < 5; ++i) {
      IoResult r = co_await streams[i]->ReadSome(asio::buffer(&c, 1));
      EXPECT_EQ(r.ec, asio::error::connection_reset);
      EXPECT_EQ(streams[i]->error_reason(), "stream limit reached");
    }
    EXPECT_EQ(s.server->counters().streams_refused, 2u);
    EXPECT_EQ(s.server->stream_count(), 3u);
    // The first three still work.
    co_await streams[0]->Write(asio::buffer(std::string("ok")));
    char buf[2];
    IoResult r = co_await accepted[0]->ReadSome(asio::buffer(buf));
    EXPECT_EQ(r.bytes, 2u);
    EXPECT_FALSE(s.client->closed());
  });
}

TEST_P(SessionTest, AcceptQueueCapRefusesExcessOpens) {
  MuxConfig server = ServerConfig();
  server.max_pending_accept = 2;
  auto s = Start(ClientConfig(), server);
  RunWithDeadline(io_, [&]() -> asio::awaitable<void> {
    boost::system::error_code ec;
    std::vector<std::shared_ptr<MuxStream>> streams;
    for (int i = 0; i < 4; ++i) streams.push_back(s.client->Open(Priority::kNormal, ec));
    char c;
    IoResult r = co_await streams[3]->ReadSome(asio::buffer(&c, 1));
    EXPECT_EQ(r.ec, asio::error::connection_reset);
    EXPECT_EQ(streams[3]->error_reason(), "accept queue full");
    EXPECT_TRUE(co_await s.server->Accept());
    EXPECT_TRUE(co_await s.server->Accept());
  });
}

TEST_P(SessionTest, LocalStreamCapFailsOpen) {
  MuxConfig client = ClientConfig();
  client.max_streams = 2;
  auto s = Start(client);
  boost::system::error_code ec;
  auto a = s.client->Open(Priority::kNormal, ec);
  auto b = s.client->Open(Priority::kNormal, ec);
  EXPECT_FALSE(ec);
  auto c = s.client->Open(Priority::kNormal, ec);
  EXPECT_EQ(c, nullptr);
  EXPECT_EQ(ec, asio::error::no_buffer_space);
  a->Reset();  // frees a slot
  auto d = s.client->Open(Priority::kNormal, ec);
  EXPECT_TRUE(d);
}

TEST_P(SessionTest, CloseFailsPendingOperations) {
  auto s = Start();
  RunWithDeadline(io_, [&]() -> asio::awaitable<void> {
    boost::system::error_code ec;
    auto stream = s.client->Open(Priority::kNormal, ec);
    asio::steady_timer later(io_);
    later.expires_after(20ms);
    later.async_wait([&](boost::system::error_code) { s.client->Close("test closes"); });
    char c;
    IoResult r = co_await stream->ReadSome(asio::buffer(&c, 1));
    EXPECT_EQ(r.ec, asio::error::connection_aborted);
    EXPECT_EQ(stream->error_reason(), "test closes");
    EXPECT_EQ(co_await s.client->Accept(), nullptr);
    EXPECT_EQ(s.client->close_reason(), "test closes");
    // The peer notices the transport going away.
    co_await s.server->WaitClosed();
    auto late = s.client->Open(Priority::kNormal, ec);
    EXPECT_EQ(late, nullptr);
    EXPECT_EQ(ec, asio::error::connection_aborted);
  });
}

TEST_P(SessionTest, ControlFramesReachTheBackend) {
  auto s = Start();
  RunWithDeadline(io_, [&]() -> asio::awaitable<void> {
    std::vector<std::string> got;
    asio::steady_timer arrived(io_);
    arrived.expires_after(10s);
    s.server->SetControlHandler([&](const Frame& frame) {
      got.emplace_back(frame.text());
      if (frame.text() == "ping") {
        const std::string pong = "pong";
        s.server->SendControl(std::span(reinterpret_cast<const std::uint8_t*>(pong.data()), 4));
      }
    });
    s.client->SetControlHandler([&](const Frame& frame) {
      got.emplace_back(frame.text());
      arrived.cancel();
    });
    const std::string ping = "ping";
    s.client->SendControl(std::span(reinterpret_cast<const std::uint8_t*>(ping.data()), 4));
    boost::system::error_code ec;
    co_await arrived.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    EXPECT_EQ(got, (std::vector<std::string>{"ping", "pong"}));
  });
}

TEST_P(SessionTest, DroppingAfterShutdownStillDeliversData) {
  auto s = Start();
  const std::size_t size = 2 * 1024 * 1024;
  RunWithDeadline(io_, [&]() -> asio::awaitable<void> {
    boost::system::error_code ec;
    auto stream = s.client->Open(Priority::kNormal, ec);
    asio::co_spawn(
        io_,
        [stream]() -> asio::awaitable<void> {
          co_await SendPattern(*stream, 9, size);  // the last owner goes away after shutdown
        },
        asio::detached);
    stream.reset();
    auto peer = co_await s.server->Accept();
    Received got = co_await ReceiveAll(*peer);
    EXPECT_EQ(got.end, asio::error::eof);
    EXPECT_EQ(got.sha256, PatternSha(9, size));
  });
}

TEST_P(SessionTest, DroppingWithoutShutdownResets) {
  auto s = Start();
  RunWithDeadline(io_, [&]() -> asio::awaitable<void> {
    boost::system::error_code ec;
    auto stream = s.client->Open(Priority::kNormal, ec);
    co_await stream->Write(asio::buffer(std::string("partial")));
    auto peer = co_await s.server->Accept();
    stream.reset();
    Received got = co_await ReceiveAll(*peer);
    EXPECT_EQ(got.end, asio::error::connection_reset);
    EXPECT_EQ(peer->error_reason(), "stream dropped");
  });
}

TEST_P(SessionTest, GracefulShutdownFlushesQueuedFrames) {
  auto s = Start();
  const std::size_t size = 200 * 1024;  // fits in the initial window: queued at once
  RunWithDeadline(io_, [&]() -> asio::awaitable<void> {
    boost::system::error_code ec;
    auto stream = s.client->Open(Priority::kNormal, ec);
    co_await SendPattern(*stream, 11, size);
    EXPECT_GT(s.client->BufferedBytes(), 0u);
    auto peer_task = [&]() -> asio::awaitable<void> {
      auto peer = co_await s.server->Accept();
      Received got = co_await ReceiveAll(*peer);
      EXPECT_EQ(got.end, asio::error::eof);
      EXPECT_EQ(got.sha256, PatternSha(11, size));
    };
    bool peer_done = false;
    asio::co_spawn(io_, peer_task, [&](std::exception_ptr) { peer_done = true; });
    co_await s.client->Shutdown(5s);
    EXPECT_EQ(s.client->close_reason(), "shutdown");
    // What was flushed before the close is complete at the peer.
    asio::steady_timer wait(io_);
    for (int i = 0; i < 500 && !peer_done; ++i) {
      wait.expires_after(10ms);
      co_await wait.async_wait(asio::use_awaitable);
    }
    EXPECT_TRUE(peer_done);
  });
}

// Bytes the backend read during its own handshake are decoded before anything else.
TEST(SessionStartTest, AlreadyReceivedBytesAreDecodedFirst) {
  asio::io_context io;
  std::unique_ptr<MemoryTransport> a, raw;  // not a structured binding: lambdas capture raw
  std::tie(a, raw) = MemoryTransport::Pair(io.get_executor());
  auto session = MuxSession::Create(std::move(a), std::make_unique<TestCodec>(), ClientConfig());
  std::vector<std::uint8_t> early;
  TestCodec codec;
  const std::string hello = "ack";
  Frame control;
  control.kind = FrameKind::kControl;
  control.payload = std::span(reinterpret_cast<const std::uint8_t*>(hello.data()), hello.size());
  codec.Encode(control, early);
  Frame open;
  open.kind = FrameKind::kOpen;
  open.stream_id = 2;
  codec.Encode(open, early);
  // ...and the first 5 bytes of a frame whose rest is still in flight.
  const std::string second = "second";
  control.payload = std::span(reinterpret_cast<const std::uint8_t*>(second.data()), second.size());
  std::vector<std::uint8_t> split;
  codec.Encode(control, split);
  early.insert(early.end(), split.begin(), split.begin() + 5);
  std::vector<std::string> controls;
  session->SetControlHandler([&](const Frame& frame) { controls.emplace_back(frame.text()); });
  session->Start(early);
  RunWithDeadline(io, [&]() -> asio::awaitable<void> {
    auto stream = co_await session->Accept();
    EXPECT_TRUE(stream);
    EXPECT_EQ(stream->id(), 2u);
    EXPECT_EQ(controls, std::vector<std::string>{"ack"});
    co_await raw->Write(asio::buffer(split.data() + 5, split.size() - 5));
    asio::steady_timer wait(io);
    for (int i = 0; i < 100 && controls.size() < 2; ++i) {
      wait.expires_after(5ms);
      co_await wait.async_wait(asio::use_awaitable);
    }
    EXPECT_EQ(controls, (std::vector<std::string>{"ack", "second"}));
  });
  session->Close("test over");
  io.restart();
  io.run_for(1s);
}

INSTANTIATE_TEST_SUITE_P(Wires, SessionTest, ::testing::Values(Wire::kMemory, Wire::kTcp),
                         [](const auto& info) {
                           return info.param == Wire::kMemory ? "Memory" : "Tcp";
                         });

}  // namespace
}  // namespace tunnelkit::mux::test
