// Legitimate traffic while the network misbehaves, on the ferro, zlayer and cloudflare (QUIC,
// through tools/cfedge) paths: the client reaches its server through tests/support's
// impairment proxy (this kernel has no sch_netem and no netfilter tools, see
// docs/reliability.md). 20 MB bodies arrive intact (SHA-256 against the same body fetched
// straight from the origin), requests succeed, a broken connection is replaced within a stated
// time, and a blackholed path (100 % loss) is detected by liveness and recovered once healed.
#include <csignal>
#include <filesystem>
#include <regex>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "harness.hpp"
#include "impair_proxy.hpp"

namespace tunnelkit::abuse {
namespace {

namespace fs = std::filesystem;
using test::ChildProcess;
using test::Impairment;
using test::ImpairProxy;

constexpr std::size_t kBigBody = 20u * 1024 * 1024;

// A delayed, jittery path that forwards TCP in MTU-sized writes: every frame boundary of the
// tunnel protocols gets split.
const Impairment kTcpImpairment{.delay = 10ms, .jitter = 10ms, .max_write = 1400};
// A lossy, reordering, duplicating path for QUIC datagrams.
const Impairment kUdpImpairment{.delay = 5ms, .jitter = 10ms, .loss = 0.01, .duplicate = 0.01};

int Occurrences(const std::string& text, const std::string& needle) {
  int count = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1))
    ++count;
  return count;
}

// The body the origin itself serves for `target`, as the reference for SHA-256 checks.
std::string Direct(int origin_port, const std::string& target) {
  const Legit direct = LegitGet(origin_port, "origin", target, 30s);
  EXPECT_EQ(direct.status, 200) << direct.error;
  return direct.body;
}

// GET 20 MB and POST 20 MB (echoed) through `port` with Host `host`, both compared by SHA-256.
void ExpectBigBodiesIntact(int port, const std::string& host, int origin_port) {
  const std::string target = "/bytes/" + std::to_string(kBigBody);
  const std::string expected = test::Sha256Hex(Direct(origin_port, target));
  const auto start = Clock::now();
  const Legit get = LegitGet(port, host, target, 30s);
  ASSERT_EQ(get.status, 200) << get.error;
  EXPECT_EQ(get.body.size(), kBigBody);
  EXPECT_EQ(test::Sha256Hex(get.body), expected) << "the GET body was corrupted on the way";
  std::string upload = get.body;
  upload[kBigBody / 3] ^= 0x5a;  // not the GET body
  const Legit echoed = HttpExchange(port, "POST", "/echo", host, upload, 30s);
  ASSERT_EQ(echoed.status, 200) << echoed.error;
  EXPECT_EQ(test::Sha256Hex(echoed.body), test::Sha256Hex(upload))
      << "the POST body was corrupted on the way";
  std::cout << "[ faults   ] 20 MB GET + 20 MB POST in "
            << std::chrono::duration_cast<Milliseconds>(Clock::now() - start).count() << " ms\n";
}

// ---- ferro ----

class FerroFaults : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure()) std::cerr << stack_.Logs() << "\n";
  }
  FerroStack stack_;
};

TEST_F(FerroFaults, TwentyMegabytesIntactThroughADelayedFragmentedPath) {
  ASSERT_NO_FATAL_FAILURE(stack_.StartServer());
  ImpairProxy path(ImpairProxy::Protocol::kTcp, stack_.control_port);
  path.Set(kTcpImpairment);
  ASSERT_NO_FATAL_FAILURE(stack_.StartClient({}, path.port()));
  ExpectBigBodiesIntact(stack_.http_port, "app", stack_.origin.port());
  EXPECT_GT(path.stats().writes, 2 * kBigBody / 1400) << "the path did not fragment";
}

// The path breaks (both ends see a reset): the client reconnects within 3 s (backoff from
// 100 ms) and requests succeed again.
TEST_F(FerroFaults, BrokenConnectionIsReplacedWithinThreeSeconds) {
  ASSERT_NO_FATAL_FAILURE(stack_.StartServer());
  ImpairProxy path(ImpairProxy::Protocol::kTcp, stack_.control_port);
  path.Set(kTcpImpairment);
  ASSERT_NO_FATAL_FAILURE(stack_.StartClient({}, path.port()));
  const auto cut = Clock::now();
  path.CutConnections();
  ASSERT_TRUE(WaitUntil(
      [&] { return Occurrences(stack_.server.Output(), "tunnel registered: app") == 2; }, 3s))
      << "no reconnect within 3 s";
  EXPECT_TRUE(WaitUntil([&] { return stack_.Get().status == 200; }, 2s));
  std::cout << "[ faults   ] ferro reconnected and served "
            << std::chrono::duration_cast<Milliseconds>(Clock::now() - cut).count()
            << " ms after the cut\n";
}

// 100 % loss: the server's liveness (session timeout 2 s, heartbeats every 500 ms) drops the
// session within 4 s; public requests meanwhile get a 502/503 with a body within 2 s, never a
// hang; once the path heals the client is back and serving within 10 s.
TEST_F(FerroFaults, BlackholeIsDetectedAndRecoveredWhenItHeals) {
  ASSERT_NO_FATAL_FAILURE(stack_.StartServer({.flags = {"--session-timeout", "2s"}}));
  ImpairProxy path(ImpairProxy::Protocol::kTcp, stack_.control_port);
  ASSERT_NO_FATAL_FAILURE(
      stack_.StartClient({.flags = {"--heartbeat-interval", "500ms"}}, path.port()));
  path.Blackhole();
  EXPECT_TRUE(stack_.server.WaitForOutput("tunnel app closed", 4s))
      << "the server did not notice the silent client";
  const Legit during = stack_.Get("/", 2s);
  EXPECT_TRUE(during.status == 502 || during.status == 503)
      << "while the client is gone: status " << during.status << " " << during.error;
  EXPECT_FALSE(during.body.empty()) << "an error status without a body";
  const auto healed = Clock::now();
  path.Heal();
  EXPECT_TRUE(WaitUntil([&] { return stack_.Get("/", 1s).status == 200; }, 10s))
      << "not recovered 10 s after the path healed";
  std::cout << "[ faults   ] ferro serving again "
            << std::chrono::duration_cast<Milliseconds>(Clock::now() - healed).count()
            << " ms after the path healed\n";
}

// Only what the server sends is lost: the server keeps hearing the client's heartbeats, so
// its own liveness check sees nothing wrong. The client must notice that its heartbeats go
// unanswered (three intervals of 300 ms), end the session and connect again; once the path
// heals it serves within 10 s (a handshake begun during the blackhole times out after 2 s).
// Without the client's own check it stayed "connected" until TCP gave up, minutes later.
TEST_F(FerroFaults, ServerSilenceIsDetectedByTheClient) {
  ASSERT_NO_FATAL_FAILURE(stack_.StartServer());
  ImpairProxy path(ImpairProxy::Protocol::kTcp, stack_.control_port);
  ASSERT_NO_FATAL_FAILURE(stack_.StartClient(
      {.flags = {"--heartbeat-interval", "300ms", "--handshake-timeout", "2s"}}, path.port()));
  path.Blackhole(ImpairProxy::Direction::kToClient);
  EXPECT_TRUE(stack_.client.WaitForOutput("heartbeats unanswered", 4s))
      << "the client did not notice the silent server";
  path.Heal();
  EXPECT_TRUE(WaitUntil([&] { return stack_.Get("/", 1s).status == 200; }, 10s))
      << "not serving 10 s after the path healed";
}

// ---- zlayer ----

class ZlayerFaults : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure()) std::cerr << stack_.Logs() << "\n";
  }
  ZlayerStack stack_;
};

TEST_F(ZlayerFaults, TwentyMegabytesIntactThroughADelayedFragmentedPath) {
  ASSERT_NO_FATAL_FAILURE(stack_.StartServer());
  ImpairProxy path(ImpairProxy::Protocol::kTcp, stack_.control_port);
  path.Set(kTcpImpairment);
  ASSERT_NO_FATAL_FAILURE(stack_.StartLink({}, path.port()));
  ExpectBigBodiesIntact(stack_.public_port, "web", stack_.origin.port());
  EXPECT_GT(path.stats().writes, 2 * kBigBody / 1400) << "the path did not fragment";
}

// 100 % loss on the link's path: the server's heartbeats (every 500 ms, 2 s timeout) take the
// tunnel down within 4 s; after the path heals the link registers again (backoff from 200 ms)
// and the service answers within 15 s.
TEST_F(ZlayerFaults, BlackholeIsDetectedByHeartbeatsAndRecovered) {
  ASSERT_NO_FATAL_FAILURE(stack_.StartServer(
      {.flags = {"--heartbeat-interval", "500ms", "--heartbeat-timeout", "2s"}}));
  ImpairProxy path(ImpairProxy::Protocol::kTcp, stack_.control_port);
  ASSERT_NO_FATAL_FAILURE(stack_.StartLink(
      {.flags = {"--reconnect-base", "200ms", "--reconnect-cap", "1s"}}, path.port()));
  path.Blackhole();
  EXPECT_TRUE(stack_.server.WaitForOutput(" down: ", 4s))
      << "the server did not notice the silent link";
  const auto healed = Clock::now();
  path.Heal();
  const std::regex registered("service web \\(tcp\\) -> public port ([0-9]+)");
  ASSERT_TRUE(WaitUntil(
      [&] {
        const std::string out = stack_.link.Output();
        return std::distance(std::sregex_iterator(out.begin(), out.end(), registered),
                             std::sregex_iterator()) >= 2;
      },
      15s))
      << "the link did not register again";
  // The port may differ after re-registration: take the latest.
  const std::string out = stack_.link.Output();
  for (auto it = std::sregex_iterator(out.begin(), out.end(), registered);
       it != std::sregex_iterator(); ++it) {
    stack_.public_port = std::stoi((*it)[1]);
  }
  EXPECT_TRUE(WaitUntil([&] { return stack_.Get("/", 1s).status == 200; }, 5s));
  std::cout << "[ faults   ] zlayer serving again "
            << std::chrono::duration_cast<Milliseconds>(Clock::now() - healed).count()
            << " ms after the path healed\n";
}

// ---- cloudflare (QUIC through cfedge) ----

class CloudflareFaults : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(Cfedge())) GTEST_FAIL() << "cfedge not built: " << Cfedge();
    char pattern[] = "/tmp/tk-faults-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    if (HasFailure()) {
      std::cerr << "---- cfedge\n" << edge_.Output() << "\n---- client\n" << client_.Output();
    }
    if (client_.Running()) client_.Stop(SIGKILL);
    if (edge_.Running()) edge_.Stop(SIGTERM);
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  static std::string Field(const std::string& output, const std::string& label) {
    std::smatch match;
    if (std::regex_search(output, match, std::regex("(^|\n)" + label + " ([^\n]+)")))
      return match[2];
    return {};
  }

  // cfedge, then a UDP impairment proxy in front of its QUIC listener, then tunnelctl
  // --backend cloudflare against the proxy.
  void Start(const std::vector<std::string>& client_flags = {}) {
    edge_ = ChildProcess({Cfedge(), "--api-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
                          "--quic-listen", "127.0.0.1:0", "--write-ca", dir_ + "/ca.pem"});
    ASSERT_TRUE(edge_.WaitForOutput("ready", 20s)) << edge_.Output();
    const std::string out = edge_.Output();
    const std::string http = Field(out, "http");
    const std::string quic = Field(out, "edge quic");
    http_port_ = std::stoi(http.substr(http.rfind(':') + 1));
    path_ = std::make_unique<ImpairProxy>(ImpairProxy::Protocol::kUdp,
                                          std::stoi(quic.substr(quic.rfind(':') + 1)));
    path_->Set(kUdpImpairment);
    std::vector<std::string> argv = {Tunnelctl(),
                                     "--backend",
                                     "cloudflare",
                                     "--url",
                                     "http://127.0.0.1:" + std::to_string(origin_.port()),
                                     "--quick-service",
                                     Field(out, "api"),
                                     "--edge-ca",
                                     dir_ + "/ca.pem",
                                     "--edge",
                                     "127.0.0.1:" + std::to_string(path_->port())};
    argv.insert(argv.end(), client_flags.begin(), client_flags.end());
    client_ = ChildProcess(argv);
    ASSERT_TRUE(client_.WaitForOutput("connection 0 registered", 20s)) << client_.Output();
    std::smatch match;
    const std::string log = client_.Output();
    ASSERT_TRUE(
        std::regex_search(log, match, std::regex("https://([a-z0-9-]+\\.trycloudflare\\.com)")));
    host_ = match[1];
  }

  HelloOrigin origin_;
  std::string dir_;
  ChildProcess edge_;
  ChildProcess client_;
  std::unique_ptr<ImpairProxy> path_;
  int http_port_ = 0;
  std::string host_;
};

TEST_F(CloudflareFaults, TwentyMegabytesIntactOverALossyReorderingPath) {
  ASSERT_NO_FATAL_FAILURE(Start());
  ExpectBigBodiesIntact(http_port_, host_, origin_.port());
  const auto stats = path_->stats();
  EXPECT_GT(stats.dropped, 0u);
  EXPECT_GT(stats.duplicated, 0u);
  std::cout << "[ faults   ] QUIC path: " << stats.forwarded << " datagrams forwarded, "
            << stats.dropped << " dropped, " << stats.duplicated << " duplicated\n";
}

// 100 % loss: QUIC's idle timeout (5 s, keepalives every second) declares the connection lost
// within 8 s; after the path heals the client registers again within 20 s and serves.
TEST_F(CloudflareFaults, BlackholeIsDetectedAndTheTunnelRegistersAgain) {
  ASSERT_NO_FATAL_FAILURE(Start({"--retries", "20"}));
  path_->Blackhole();
  EXPECT_TRUE(client_.WaitForOutput("connection 0 to the edge was lost", 8s))
      << "the client did not notice the dead path";
  const auto healed = Clock::now();
  path_->Heal();
  EXPECT_TRUE(
      WaitUntil([&] { return Occurrences(client_.Output(), "connection 0 registered") >= 2; }, 20s))
      << "not registered again 20 s after the path healed";
  EXPECT_TRUE(WaitUntil([&] { return LegitGet(http_port_, host_, "/", 2s).status == 200; }, 5s));
  std::cout << "[ faults   ] cloudflare serving again "
            << std::chrono::duration_cast<Milliseconds>(Clock::now() - healed).count()
            << " ms after the path healed\n";
}

// Loss in one direction only (edge -> client): the client hears nothing and gives the
// connection up after QUIC's idle timeout, while the edge, still receiving the client's last
// packets, holds it a few seconds more. The new registration may be refused as a duplicate
// (EDUPCONN) meanwhile; that must not end the tunnel: it registers again within 20 s of the
// heal and serves.
TEST_F(CloudflareFaults, OneWayLossIsDetectedAndTheTunnelRegistersAgain) {
  ASSERT_NO_FATAL_FAILURE(Start({"--retries", "20"}));
  path_->Blackhole(ImpairProxy::Direction::kToClient);
  EXPECT_TRUE(client_.WaitForOutput("connection 0 to the edge was lost", 8s))
      << "the client did not notice the dead path";
  const auto healed = Clock::now();
  path_->Heal();
  EXPECT_TRUE(
      WaitUntil([&] { return Occurrences(client_.Output(), "connection 0 registered") >= 2; }, 20s))
      << "not registered again 20 s after the path healed";
  EXPECT_TRUE(WaitUntil([&] { return LegitGet(http_port_, host_, "/", 2s).status == 200; }, 5s));
  std::cout << "[ faults   ] cloudflare serving again "
            << std::chrono::duration_cast<Milliseconds>(Clock::now() - healed).count()
            << " ms after the path healed\n";
}

}  // namespace
}  // namespace tunnelkit::abuse
