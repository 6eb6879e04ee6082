// ferro::Connection end to end: two connections over a TCP pair on 127.0.0.1, "tk-flow" on,
// a small stream window so that a writer soon waits for credit.
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <boost/asio.hpp>

#include "mux/connection.hpp"
#include "tunnelkit/stream/socket_stream.hpp"

namespace tunnelkit::ferro {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;

constexpr std::uint32_t kWindow = 64 * 1024;

struct ConnectionPair {
  std::shared_ptr<Connection> client;
  std::shared_ptr<Connection> server;
  std::vector<std::shared_ptr<MuxStream>> accepted;  // streams the client opened, server side
};

std::shared_ptr<ConnectionPair> Connect(asio::io_context& io) {
  tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  tcp::socket client_socket(io);
  client_socket.connect(acceptor.local_endpoint());
  tcp::socket server_socket = acceptor.accept();
  auto logger = std::make_shared<spdlog::logger>("ferro-connection-test");
  Connection::Options options;
  options.flow_control = true;
  options.stream_window = kWindow;
  options.max_stream_window = kWindow;
  auto pair = std::make_shared<ConnectionPair>();
  pair->client = std::make_shared<Connection>(std::make_unique<TcpStream>(std::move(client_socket)),
                                              FrameDecoder(), options, logger);
  options.is_server = true;
  pair->server = std::make_shared<Connection>(std::make_unique<TcpStream>(std::move(server_socket)),
                                              FrameDecoder(), options, logger);
  std::weak_ptr<ConnectionPair> weak = pair;
  pair->server->Start(
      [weak](std::shared_ptr<MuxStream> stream) {
        if (auto p = weak.lock()) p->accepted.push_back(std::move(stream));
      },
      [](const Frame&) {}, [](const std::string&) {});
  pair->client->Start([](std::shared_ptr<MuxStream> stream) { stream->Reset(); },
                      [](const Frame&) {}, [](const std::string&) {});
  return pair;
}

asio::awaitable<void> Sleep(std::chrono::milliseconds d) {
  asio::steady_timer timer(co_await asio::this_coro::executor, d);
  co_await timer.async_wait(asio::use_awaitable);
}

// A writer waiting for credit (the peer reads nothing) wakes and fails once the peer resets
// the stream, with or without having shut its own side down first (after which the reset
// used to send nothing, and the writer waited forever).
void WriterBlockedOnCreditFailsOnPeerReset(bool peer_shut_down_first) {
  asio::io_context io;
  auto pair = Connect(io);
  std::optional<IoResult> written;
  bool finished = false;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        auto stream = pair->client->Open(Protocol::kTcp, StreamPriority::kNormal);
        asio::co_spawn(
            io,
            [&, stream]() -> asio::awaitable<void> {
              const std::string big(1024 * 1024, 'x');
              written = co_await stream->Write(asio::buffer(big));
            },
            asio::detached);
        for (int i = 0; i < 100 && pair->accepted.empty(); ++i) co_await Sleep(10ms);
        EXPECT_EQ(pair->accepted.size(), 1u);
        if (pair->accepted.empty()) co_return;
        co_await Sleep(100ms);  // the writer has spent the window by now
        EXPECT_FALSE(written.has_value()) << "the writer should be waiting for credit";
        auto peer = pair->accepted.front();
        if (peer_shut_down_first) {
          EXPECT_FALSE(co_await peer->ShutdownWrite());
          co_await Sleep(20ms);
        }
        peer->Reset();
        for (int i = 0; i < 200 && !written; ++i) co_await Sleep(10ms);
        finished = true;
      },
      asio::detached);
  io.run_for(5s);
  ASSERT_TRUE(finished);
  ASSERT_TRUE(written.has_value()) << "the writer still waits for credit after the peer's reset";
  EXPECT_EQ(written->ec, asio::error::connection_reset) << written->ec.message();
  EXPECT_LT(written->bytes, 1024u * 1024u);
  EXPECT_EQ(pair->client->stream_count(), 0u);
  EXPECT_EQ(pair->server->stream_count(), 0u);
  pair->client->Close("test over");
  pair->server->Close("test over");
  io.restart();
  io.run_for(200ms);
}

TEST(FerroConnection, WriterBlockedOnCreditFailsWhenThePeerResets) {
  WriterBlockedOnCreditFailsOnPeerReset(false);
}

TEST(FerroConnection, WriterBlockedOnCreditFailsWhenThePeerResetsAfterItsShutdown) {
  WriterBlockedOnCreditFailsOnPeerReset(true);
}

}  // namespace
}  // namespace tunnelkit::ferro
