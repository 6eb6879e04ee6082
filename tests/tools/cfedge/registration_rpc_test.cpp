// Cap'n Proto RPC on the control stream, over a real TCP socket pair on loopback, with KJ driven
// by asio: the client's RegistrationClient against the edge emulator's EdgeRpcSession.
#include <capnp/message.h>
#include <capnp/rpc.capnp.h>
#include <capnp/serialize.h>
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "emulator/edge_rpc_session.hpp"
#include "emulator/tunnel_registry.hpp"
#include "tunnelkit/cloudflare/wire/kjasio/asio_kj_loop.hpp"
#include "tunnelkit/cloudflare/wire/rpc/registration_client.hpp"
#include "tunnelkit/stream/socket_stream.hpp"

namespace tunnelkit::cloudflare {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;

// Records what the client writes, to check the bytes on the wire.
class RecordingStream final : public Stream {
 public:
  explicit RecordingStream(std::shared_ptr<Stream> inner) : inner_(std::move(inner)) {}
  asio::any_io_executor get_executor() override { return inner_->get_executor(); }
  asio::awaitable<IoResult> ReadSome(asio::mutable_buffer buffer) override {
    co_return co_await inner_->ReadSome(buffer);
  }
  asio::awaitable<IoResult> Write(asio::const_buffer buffer) override {
    auto p = static_cast<const char*>(buffer.data());
    written.append(p, buffer.size());
    co_return co_await inner_->Write(buffer);
  }
  asio::awaitable<boost::system::error_code> ShutdownWrite() override {
    co_return co_await inner_->ShutdownWrite();
  }
  void Reset() override { inner_->Reset(); }
  std::string Describe() const override { return "recording " + inner_->Describe(); }
  std::string written;

 private:
  std::shared_ptr<Stream> inner_;
};

class Connection final : public emulator::EdgeConnection {
 public:
  std::string Describe() const override { return "test connection"; }
};

class RegistrationRpcTest : public ::testing::Test {
 protected:
  RegistrationRpcTest() : loop(io), registry(emulator::TunnelRegistry::Options{}) {
    registry.on_event = [this](const std::string& line) { events.push_back(line); };
    tunnel = registry.Issue();
  }

  // A connected pair: the client's end, and the server's end served by an EdgeRpcSession.
  std::shared_ptr<Stream> Connect() {
    tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    tcp::socket client(io), server(io);
    client.connect(acceptor.local_endpoint());
    acceptor.accept(server);
    auto connection = std::make_shared<Connection>();
    connections.push_back(connection);
    sessions.push_back(std::make_unique<emulator::EdgeRpcSession>(
        loop, registry, std::make_shared<tunnelkit::TcpStream>(std::move(server)), connection));
    return std::make_shared<tunnelkit::TcpStream>(std::move(client));
  }

  RegistrationRequest Request(std::uint8_t index = 0) {
    RegistrationRequest request;
    request.credentials = tunnel.credentials;
    request.conn_index = index;
    request.options.client.client_id = RandomUuid();
    request.options.client.features = DefaultClientFeatures();
    request.options.client.version = "2023.7.3";
    request.options.client.arch = "linux_amd64";
    request.options.origin_local_ip = IpTo16Bytes("127.0.0.1");
    return request;
  }

  // Runs `body` on the io_context until it finishes (bounded).
  void Run(std::function<asio::awaitable<void>()> body) {
    bool done = false;
    std::exception_ptr failure;
    asio::co_spawn(io, body(), [&](std::exception_ptr e) {
      failure = e;
      done = true;
    });
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!done && std::chrono::steady_clock::now() < deadline) {
      io.restart();  // run_for stops the io_context whenever it runs out of work
      io.run_for(50ms);
    }
    ASSERT_TRUE(done) << "timed out";
    if (failure) std::rethrow_exception(failure);
  }

  asio::awaitable<void> Sleep(std::chrono::milliseconds d) {
    asio::steady_timer timer(io, d);
    co_await timer.async_wait(asio::use_awaitable);
  }

  bool HasEvent(const std::string& prefix) {
    for (const auto& e : events) {
      if (e.rfind(prefix, 0) == 0) return true;
    }
    return false;
  }

  asio::io_context io;
  AsioKjLoop loop;
  emulator::TunnelRegistry registry;
  QuickTunnel tunnel;
  std::vector<std::string> events;
  std::vector<std::shared_ptr<Connection>> connections;
  std::vector<std::unique_ptr<emulator::EdgeRpcSession>> sessions;
};

TEST_F(RegistrationRpcTest, RegistersUpdatesAndUnregisters) {
  auto stream = Connect();
  RegistrationClient client(loop, stream);
  Run([&]() -> asio::awaitable<void> {
    auto result = co_await client.Register(Request(0));
    EXPECT_TRUE(result.registered) << result.error.cause;
    EXPECT_EQ(result.details.location, "lhr01");
    EXPECT_TRUE(HasEvent("registered tunnel=" + FormatUuid(tunnel.credentials.tunnel_id) +
                         " conn_index=0 hostname=" + tunnel.hostname +
                         " connection=" + FormatUuid(result.details.uuid)));
    auto routed = registry.Route(tunnel.hostname);
    EXPECT_EQ(routed.size(), 1u);
    EXPECT_EQ(registry.Route("unknown.trycloudflare.com").size(), 0u);
    std::string config = R"({"ingress":[],"warp-routing":{}})";
    co_await client.UpdateLocalConfiguration(config);
    EXPECT_TRUE(HasEvent("config tunnel=" + FormatUuid(tunnel.credentials.tunnel_id) +
                         " bytes=" + std::to_string(config.size())));
    co_await client.Unregister(5s);
    EXPECT_TRUE(HasEvent("unregistered tunnel=" + FormatUuid(tunnel.credentials.tunnel_id) +
                         " conn_index=0"));
    EXPECT_EQ(registry.Route(tunnel.hostname).size(), 0u);
  });
}

TEST_F(RegistrationRpcTest, CallsArePipelinedOnTheBootstrapQuestion) {
  auto stream = std::make_shared<RecordingStream>(Connect());
  RegistrationClient client(loop, stream);
  Run([&]() -> asio::awaitable<void> {
    // Three calls before anything came back: all go out against the bootstrap's promised answer.
    auto first = client.RegisterPromise(Request(0));
    auto second = client.RegisterPromise(Request(1));
    auto third = client.RegisterPromise(Request(2));
    auto a = co_await AwaitKj(loop, kj::mv(first));
    auto b = co_await AwaitKj(loop, kj::mv(second));
    auto c = co_await AwaitKj(loop, kj::mv(third));
    EXPECT_TRUE(a.registered && b.registered && c.registered);
    EXPECT_EQ(registry.Route(tunnel.hostname).size(), 3u);
  });
  // Message 1: Bootstrap, question 0, exactly the 48 bytes cloudflared sends (spec section 14).
  const unsigned char bootstrap[] = {0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0,
                                     8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0,
                                     0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  ASSERT_GE(stream->written.size(), sizeof bootstrap);
  EXPECT_EQ(stream->written.substr(0, sizeof bootstrap),
            std::string(std::begin(bootstrap), std::end(bootstrap)));
  // Then the calls: interface RegistrationServer, method 0, target promisedAnswer(question 0).
  kj::ArrayPtr<const capnp::word> rest(
      reinterpret_cast<const capnp::word*>(stream->written.data() + sizeof bootstrap),
      (stream->written.size() - sizeof bootstrap) / sizeof(capnp::word));
  int calls = 0;
  while (rest.size() > 0 && calls < 3) {
    // Copy to aligned memory before reading.
    auto words = kj::heapArray<capnp::word>(rest.size());
    memcpy(words.begin(), rest.begin(), rest.size() * sizeof(capnp::word));
    capnp::FlatArrayMessageReader reader(words);
    auto message = reader.getRoot<capnp::rpc::Message>();
    ASSERT_EQ(message.which(), capnp::rpc::Message::CALL);
    auto call = message.getCall();
    EXPECT_EQ(call.getInterfaceId(), 0xf71695ec7fe85497ull);
    EXPECT_EQ(call.getMethodId(), 0u);
    ASSERT_EQ(call.getTarget().which(), capnp::rpc::MessageTarget::PROMISED_ANSWER);
    EXPECT_EQ(call.getTarget().getPromisedAnswer().getQuestionId(), 0u);
    ++calls;
    rest = rest.slice(reader.getEnd() - words.begin(), rest.size());
  }
  EXPECT_EQ(calls, 3);
}

TEST_F(RegistrationRpcTest, RefusesBadCredentials) {
  auto stream = Connect();
  RegistrationClient client(loop, stream);
  Run([&]() -> asio::awaitable<void> {
    auto bad_secret = Request(0);
    bad_secret.credentials.secret[0] ^= 1;
    auto result = co_await client.Register(bad_secret);
    EXPECT_FALSE(result.registered);
    EXPECT_EQ(result.error.cause, "Unauthorized: invalid tunnel secret");
    EXPECT_FALSE(result.error.should_retry);

    auto bad_tag = Request(0);
    bad_tag.credentials.account_tag = "ffffffffffffffffffffffffffffffff";
    result = co_await client.Register(bad_tag);
    EXPECT_EQ(result.error.cause, "Unauthorized: account tag does not match the tunnel");

    auto unknown = Request(0);
    unknown.credentials.tunnel_id = RandomUuid();
    result = co_await client.Register(unknown);
    EXPECT_EQ(result.error.cause.rfind("Unauthorized: unknown tunnel ", 0), 0u)
        << result.error.cause;
    EXPECT_TRUE(HasEvent("refused "));
    EXPECT_EQ(registry.Route(tunnel.hostname).size(), 0u);
  });
}

TEST_F(RegistrationRpcTest, DuplicateIndexAndDisconnectUnregisters) {
  auto first_stream = Connect();
  auto second_stream = Connect();
  auto first = std::make_unique<RegistrationClient>(loop, first_stream);
  RegistrationClient second(loop, second_stream);
  Run([&]() -> asio::awaitable<void> {
    auto result = co_await first->Register(Request(0));
    EXPECT_TRUE(result.registered);
    auto duplicate = co_await second.Register(Request(0));
    EXPECT_FALSE(duplicate.registered);
    EXPECT_EQ(duplicate.error.cause, "EDUPCONN");
    auto other_index = co_await second.Register(Request(1));
    EXPECT_TRUE(other_index.registered);
    // The first client goes away without unregistering: closing its stream ends the session.
    first.reset();
    first_stream->Reset();
    for (int i = 0;
         i < 100 && !HasEvent("unregistered tunnel=" + FormatUuid(tunnel.credentials.tunnel_id) +
                              " conn_index=0");
         ++i) {
      co_await Sleep(20ms);
    }
  });
  EXPECT_TRUE(HasEvent("unregistered tunnel=" + FormatUuid(tunnel.credentials.tunnel_id) +
                       " conn_index=0"));
  EXPECT_EQ(registry.Route(tunnel.hostname).size(), 1u);
}

TEST_F(RegistrationRpcTest, TimesOutWhenTheEdgeNeverAnswers) {
  // A listener that accepts and never speaks RPC.
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  tcp::socket client_socket(io), server_socket(io);
  client_socket.connect(acceptor.local_endpoint());
  acceptor.accept(server_socket);
  RegistrationClient client(loop, std::make_shared<tunnelkit::TcpStream>(std::move(client_socket)),
                            200ms);
  Run([&]() -> asio::awaitable<void> {
    try {
      co_await client.Register(Request(0));
      ADD_FAILURE() << "no timeout";
    } catch (const KjError& e) {
      EXPECT_NE(std::string(e.what()).find("registerConnection timed out"), std::string::npos)
          << e.what();
    }
  });
}

TEST_F(RegistrationRpcTest, GarbageOnTheControlStreamEndsOnlyThatSession) {
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  tcp::socket client_socket(io), server_socket(io);
  client_socket.connect(acceptor.local_endpoint());
  acceptor.accept(server_socket);
  auto connection = std::make_shared<Connection>();
  auto session = std::make_unique<emulator::EdgeRpcSession>(
      loop, registry, std::make_shared<tunnelkit::TcpStream>(std::move(server_socket)), connection);
  bool disconnected = false;
  loop.AddTask(session->OnDisconnect().then([&] { disconnected = true; },
                                            [&](kj::Exception&&) { disconnected = true; }));
  std::string garbage(64, '\xff');
  asio::write(client_socket, asio::buffer(garbage));
  Run([&]() -> asio::awaitable<void> {
    for (int i = 0; i < 100 && !disconnected; ++i) co_await Sleep(20ms);
  });
  EXPECT_TRUE(disconnected);
  // A healthy session next to it still works.
  auto stream = Connect();
  RegistrationClient client(loop, stream);
  Run([&]() -> asio::awaitable<void> {
    auto result = co_await client.Register(Request(0));
    EXPECT_TRUE(result.registered);
  });
}

}  // namespace
}  // namespace tunnelkit::cloudflare
