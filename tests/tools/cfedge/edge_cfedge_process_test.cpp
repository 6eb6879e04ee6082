// tools/cfedge as a process, driven from here over real QUIC: a connection registers on the
// control stream, a visitor's GET through --http-listen arrives on a data stream the edge opens,
// POST /cfedge/drop closes the connection, and a restarted cfedge with the same --state and CA
// accepts the tunnel's re-registration. Two --quic-listen addresses are served by one process.
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <regex>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include "emulator/certificates.hpp"
#include "quic_test_env.hpp"
#include "tunnelkit/cloudflare/wire/api/quick_tunnel.hpp"
#include "tunnelkit/cloudflare/wire/codec/http_metadata.hpp"
#include "tunnelkit/cloudflare/wire/kjasio/asio_kj_loop.hpp"
#include "tunnelkit/cloudflare/wire/rpc/registration_client.hpp"
#include "tunnelkit/cloudflare/wire/stream/connect_stream.hpp"

namespace tunnelkit::cloudflare::quic::test {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using tunnelkit::test::ChildProcess;

std::string CfedgePath() {
  return std::string(TUNNELKIT_BINARY_DIR) + "/bin/cfedge";
}

// Every value after "<label> " in the output, in order.
std::vector<std::string> Fields(const std::string& output, const std::string& label) {
  std::vector<std::string> out;
  std::regex pattern("(^|\n)" + label + " ([^\n]+)");
  for (auto it = std::sregex_iterator(output.begin(), output.end(), pattern);
       it != std::sregex_iterator(); ++it) {
    out.push_back((*it)[2]);
  }
  return out;
}

template <typename Endpoint>
Endpoint ParseEndpoint(std::string text) {
  if (auto scheme = text.find("://"); scheme != std::string::npos) text = text.substr(scheme + 3);
  auto colon = text.rfind(':');
  return Endpoint(asio::ip::make_address(text.substr(0, colon)),
                  static_cast<unsigned short>(std::stoi(text.substr(colon + 1))));
}

asio::awaitable<http::response<http::string_body>> Call(tcp::endpoint to, http::verb verb,
                                                        std::string target, std::string host) {
  tcp::socket socket(co_await asio::this_coro::executor);
  co_await socket.async_connect(to, asio::use_awaitable);
  http::request<http::string_body> request(verb, target, 11);
  request.set(http::field::host, host);
  request.keep_alive(false);
  request.prepare_payload();
  co_await http::async_write(socket, request, asio::use_awaitable);
  beast::flat_buffer buffer;
  http::response<http::string_body> response;
  co_await http::async_read(socket, buffer, response, asio::use_awaitable);
  co_return response;
}

// Answers every data stream: 200, "served <target>".
asio::awaitable<void> Respond(std::shared_ptr<QuicStream> stream) {
  MetadataLimits limits;
  auto opening = co_await ReadStreamOpening(*stream, limits);
  if (!opening.error.empty()) {
    stream->Reset();
    co_return;
  }
  std::string body = "served " + TargetFromDest(opening.request.dest);
  ConnectResponse response;
  response.metadata = EncodeResponseMetadata(
      {200, {{"Content-Length", std::to_string(body.size())}, {"Content-Type", "text/plain"}}});
  co_await WriteConnectResponse(*stream, response);
  co_await WriteAll(*stream, body);
}

class CfedgeProcess : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(std::filesystem::exists(CfedgePath())) << "cfedge not built: " << CfedgePath();
    std::string tmpl = (std::filesystem::temp_directory_path() / "tk-cfedge-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir = tmpl;
    auto ca = emulator::GenerateCa("edge process test CA");
    emulator::WriteFile(Path("ca.pem"), ca.certificate);
    emulator::WriteFile(Path("ca.key"), ca.private_key, true);
  }
  void TearDown() override {
    if (edge.Running()) edge.Stop(SIGTERM);
    if (HasFailure()) std::cerr << "cfedge output:\n" << edge.Output();
    std::filesystem::remove_all(dir);
  }

  std::string Path(const std::string& name) const { return (dir / name).string(); }

  void StartEdge() {
    edge =
        ChildProcess({CfedgePath(), "--api-listen", "127.0.0.1:0", "--quic-listen", "127.0.0.1:0",
                      "--quic-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--ca-cert",
                      Path("ca.pem"), "--ca-key", Path("ca.key"), "--state", Path("state.json")});
    ASSERT_TRUE(edge.WaitForOutput("ready", 20s)) << edge.Output();
    std::string output = edge.Output();
    api = ParseEndpoint<tcp::endpoint>(Fields(output, "api").at(0));
    ingress = ParseEndpoint<tcp::endpoint>(Fields(output, "http").at(0));
    quic.clear();
    for (const auto& text : Fields(output, "edge quic")) {
      quic.push_back(ParseEndpoint<udp::endpoint>(text));
    }
  }

  // Runs `body` with the io_context (and KJ on it) until it finishes, at most `limit`.
  void Run(std::function<asio::awaitable<void>()> body, std::chrono::milliseconds limit = 20s) {
    bool done = false;
    std::exception_ptr failure;
    asio::co_spawn(io, body(), [&](std::exception_ptr e) {
      failure = e;
      done = true;
    });
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done && std::chrono::steady_clock::now() < deadline) {
      io.restart();
      io.run_for(20ms);
    }
    ASSERT_TRUE(done) << "timed out";
    if (failure) std::rethrow_exception(failure);
  }

  // Dials `where`, serves data streams with Respond, registers as `conn_index`.
  asio::awaitable<std::shared_ptr<QuicConnection>> Register(udp::endpoint where, int conn_index,
                                                            RegistrationResult& result) {
    QuicClientOptions options;
    options.ca_file = Path("ca.pem");
    auto connection = co_await QuicClient::Connect(io.get_executor(), where, options);
    auto ex = io.get_executor();
    connection->SetStreamHandler([ex](std::shared_ptr<QuicStream> stream) {
      asio::co_spawn(ex, Respond(std::move(stream)), asio::detached);
    });
    std::shared_ptr<Stream> control = co_await connection->OpenStream();
    rpc = std::make_unique<RegistrationClient>(loop, control);
    RegistrationRequest request;
    request.credentials = tunnel.credentials;
    request.conn_index = static_cast<std::uint8_t>(conn_index);
    request.options.client.client_id = RandomUuid();
    request.options.client.features = DefaultClientFeatures();
    request.options.client.version = "2023.7.3";
    request.options.client.arch = "linux_amd64";
    request.options.origin_local_ip = IpTo16Bytes("127.0.0.1");
    result = co_await rpc->Register(request);
    co_return connection;
  }

  std::filesystem::path dir;
  ChildProcess edge;
  tcp::endpoint api, ingress;
  std::vector<udp::endpoint> quic;
  QuickTunnel tunnel;
  asio::io_context io;
  AsioKjLoop loop{io};
  std::unique_ptr<RegistrationClient> rpc;
};

TEST_F(CfedgeProcess, ForwardsDropsAndKeepsTunnelsAcrossARestart) {
  StartEdge();
  ASSERT_EQ(quic.size(), 2u) << edge.Output();
  std::shared_ptr<QuicConnection> connection;
  Run([&]() -> asio::awaitable<void> {
    auto reply = co_await Call(api, http::verb::post, "/tunnel", "api.trycloudflare.com");
    auto parsed = ParseQuickTunnelReply(reply.body());
    if (!parsed) throw std::runtime_error("bad API reply: " + parsed.message());
    tunnel = *parsed;
    // The second edge address of the same process.
    RegistrationResult result;
    connection = co_await Register(quic[1], 0, result);
    EXPECT_TRUE(result.registered) << result.error.cause;
    auto response = co_await Call(ingress, http::verb::get, "/hello?x=1", tunnel.hostname);
    EXPECT_EQ(response.result_int(), 200);
    EXPECT_EQ(response.body(), "served /hello?x=1");
  });
  EXPECT_TRUE(edge.WaitForOutput(
      "proxied GET " + tunnel.hostname + "/hello?x=1 status=200 " + "conn_index=0 bytes=17", 5s));

  Run([&]() -> asio::awaitable<void> {
    auto dropped = co_await Call(api, http::verb::post, "/cfedge/drop?conn_index=0", "localhost");
    EXPECT_EQ(dropped.result_int(), 200);
    EXPECT_EQ(dropped.body(), R"({"success":true,"dropped":1})");
    auto info = co_await connection->WaitClosed();
    EXPECT_EQ(info.reason, "dropped by cfedge");
    rpc.reset();
    connection.reset();
    auto response = co_await Call(ingress, http::verb::get, "/", tunnel.hostname);
    EXPECT_EQ(response.result_int(), 530);
  });
  EXPECT_TRUE(edge.WaitForOutput("dropped conn_index=0 count=1", 5s));

  // A new process with the same state file and CA knows the tunnel.
  EXPECT_EQ(edge.Stop(SIGTERM), 0);
  StartEdge();
  EXPECT_NE(edge.Output().find("tunnels=1"), std::string::npos) << edge.Output();
  Run([&]() -> asio::awaitable<void> {
    RegistrationResult result;
    connection = co_await Register(quic[0], 0, result);
    EXPECT_TRUE(result.registered) << result.error.cause;
    auto response = co_await Call(ingress, http::verb::get, "/again", tunnel.hostname);
    EXPECT_EQ(response.result_int(), 200);
    EXPECT_EQ(response.body(), "served /again");
    rpc.reset();
    connection->Close(0);
  });
}

}  // namespace
}  // namespace tunnelkit::cloudflare::quic::test
