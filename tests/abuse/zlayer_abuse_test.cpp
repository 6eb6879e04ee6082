// A real `tunnelctl serve --backend zlayer` and a link on loopback, attacked by bounded-time
// clients on the WebSocket front door (the control port) and on a public port. Every test
// asserts that the server stays alive, that its RSS grows by less than a stated bound, and
// that legitimate requests through the existing link's public port are served during and after
// the attack within a stated latency. docs/reliability.md lists what each test proves.
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <map>
#include <thread>

#include <gtest/gtest.h>

#include "attacks.hpp"
#include "harness.hpp"

namespace tunnelkit::abuse {
namespace {

constexpr std::int64_t kMiB = 1024;  // in KiB, the unit of RssKib
const std::string kPath = "/tunnel/v1";

class ZlayerAbuse : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure()) std::cerr << stack_.Logs() << "\n";
  }
  // Observe() on the server, with the stack's output pipes drained while the attack runs.
  Observation Attack(const std::function<void()>& attack, const std::function<Legit()>& legit) {
    return Observe(stack_.server.pid(), attack, legit, kLegitLatency, [this] { stack_.Drain(); });
  }
  Legit Legitimate() const { return stack_.Get("/bytes/1000"); }
  void ExpectServesAfter(const std::string& what) {
    const Legit after = stack_.Get("/bytes/100000");
    EXPECT_EQ(after.status, 200) << what << " after the attack: " << after.error;
    EXPECT_EQ(after.body.size(), 100000u);
    EXPECT_LE(after.latency, kLegitLatency) << what;
  }
  ZlayerStack stack_;
};

// Malformed input on the front door, before authentication: each connection is refused (an
// error status) or closed within 15 s (the 10 s wait for Auth at most, plus a margin for a
// loaded machine), and nothing else is disturbed.
TEST_F(ZlayerAbuse, MalformedFrontDoorInputClosesOnlyItsConnection) {
  ASSERT_NO_FATAL_FAILURE(stack_.StartServer());
  ASSERT_NO_FATAL_FAILURE(stack_.StartLink());
  const std::vector<Payload> payloads = {
      {"junk message", WebSocketBinaryHeader(64) + Junk(64, 7), kPath},
      {"Auth of length 4 GiB", WebSocketBinaryHeader(5) + std::string("\x01\xff\xff\xff\xff", 5),
       kPath},
      {"1 TiB frame", WebSocketBinaryHeader(1ull << 40) + Junk(4096, 8), kPath},
      {"text frame", std::string("\x81\x85\0\0\0\0hello", 11), kPath},
      {"junk after the upgrade", Junk(512, 9), kPath},
      {"junk", Junk(4096, 10) + "\r\n\r\n"},
      {"no upgrade", "GET /tunnel/v1 HTTP/1.1\r\nHost: x\r\n\r\n"},
      {"200 KiB header",
       "GET /tunnel/v1 HTTP/1.1\r\nHost: x\r\nX: " + std::string(200 * 1024, 'a') + "\r\n\r\n"},
  };
  std::map<std::string, int> left_open;
  const Observation o =
      Attack([&] { left_open = LeftOpen(stack_.control_port, payloads, 160, 80, 15s); },
             [&] { return Legitimate(); });
  ExpectHeld(o, 32 * kMiB, "malformed front-door input");
  ExpectNoneLeftOpen(left_open);
  ExpectServesAfter("malformed front-door input");
}

// 40 WebSockets each announce a 15 MiB binary message before authenticating and send it.
// The server's pre-auth message limit and unauthenticated-connection cap keep its RSS within
// 64 MiB.
TEST_F(ZlayerAbuse, PreAuthHugeMessagesStayBounded) {
  ASSERT_NO_FATAL_FAILURE(stack_.StartServer());
  ASSERT_NO_FATAL_FAILURE(stack_.StartLink());
  constexpr std::size_t kMessage = 15u * 1024 * 1024;
  const std::string chunk = Junk(1 << 20, 11);
  std::atomic<int> closed{0};
  const Observation o = Attack(
      [&] {
        RunParallel(40, 40, [&](int) {
          const int fd = OpenWebSocket(stack_.control_port, kPath);
          if (fd < 0) {
            ++closed;
            return;
          }
          bool open = WriteAll(fd, WebSocketBinaryHeader(kMessage), 2s);
          const auto deadline = Clock::now() + 8s;
          for (std::size_t sent = 0; open && sent < kMessage && Clock::now() < deadline;
               sent += chunk.size()) {
            open = WriteAll(fd, chunk, 2s);
          }
          if (!open || WaitClosed(fd, 5s)) ++closed;
          ::close(fd);
        });
      },
      [&] { return Legitimate(); });
  ExpectHeld(o, 64 * kMiB, "pre-auth 15 MiB messages x40");
  EXPECT_EQ(closed.load(), 40) << "huge pre-auth messages were not refused";
  ExpectServesAfter("pre-auth flood");
}

// Slowloris on the front door: 300 connections trickle their upgrade request for 8 s.
TEST_F(ZlayerAbuse, SlowlorisOnTheFrontDoorDoesNotStarveTheLink) {
  ASSERT_NO_FATAL_FAILURE(stack_.StartServer());
  ASSERT_NO_FATAL_FAILURE(stack_.StartLink());
  SocketSet trickling;
  const Observation o = Attack(
      [&] {
        for (int i = 0; i < 300; ++i) {
          const int fd = ConnectFrom(stack_.control_port);
          if (fd >= 0 && WriteAll(fd, "GET /tunnel/v1 HTTP/1.1\r\nHost: x\r\n", 1s))
            trickling.Add(fd);
        }
        const auto end = Clock::now() + 8s;
        for (int line = 0; Clock::now() < end; ++line) {
          const std::string header = "X-Slow-" + std::to_string(line) + ": x\r\n";
          for (int fd : trickling.fds()) WriteAll(fd, header, 10ms);
          std::this_thread::sleep_for(200ms);
        }
      },
      [&] { return Legitimate(); });
  trickling.CloseAll();
  ExpectHeld(o, 48 * kMiB, "front-door slowloris x300");
  ExpectServesAfter("front-door slowloris");
}

// Slow read on a public port: 50 clients ask the origin for 200 MB and read nothing. What the
// server holds per public connection is bounded, 50 of them under 80 MiB.
TEST_F(ZlayerAbuse, StalledReadersOnAPublicPortStayBounded) {
  ASSERT_NO_FATAL_FAILURE(stack_.StartServer());
  ASSERT_NO_FATAL_FAILURE(stack_.StartLink());
  SocketSet readers;
  const Observation o = Attack(
      [&] {
        for (int i = 0; i < 50; ++i) {
          const int fd = ConnectFrom(stack_.public_port);
          if (fd < 0) continue;
          const int small = 4096;
          ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
          if (WriteAll(fd, "GET /bytes/209715200 HTTP/1.1\r\nHost: web\r\n\r\n", 1s))
            readers.Add(fd);
        }
        std::this_thread::sleep_for(6s);
      },
      [&] { return Legitimate(); });
  EXPECT_EQ(readers.size(), 50u);
  ExpectHeld(o, 80 * kMiB, "stalled public readers x50");
  readers.CloseAll();
  ExpectServesAfter("stalled public readers");
}

// Aborted downloads through a public port: 200 clients read 1 MiB of 8 MiB and close; the
// link gives back every origin connection and data channel (descriptors back to the baseline).
TEST_F(ZlayerAbuse, AbortedDownloadsReleaseTheirConnections) {
  ASSERT_NO_FATAL_FAILURE(stack_.StartServer());
  ASSERT_NO_FATAL_FAILURE(stack_.StartLink({.limits = {.max_open_files = 256}}));
  const int link_descriptors = DescriptorsAfter(stack_.link.pid());
  std::atomic<int> aborted{0};
  const Observation o = Attack(
      [&] {
        aborted =
            AbortedDownloads(stack_.public_port, "GET /bytes/8388608 HTTP/1.1\r\nHost: web\r\n\r\n",
                             200, 10, 1u << 20);
      },
      [&] { return Legitimate(); });
  ExpectHeld(o, 64 * kMiB, "aborted downloads x200");
  EXPECT_EQ(aborted.load(), 200);
  EXPECT_TRUE(WaitUntil(
      [&] { return test::OpenDescriptors(stack_.link.pid()) <= link_descriptors + 4; }, 10s))
      << "the link holds " << test::OpenDescriptors(stack_.link.pid()) << " descriptors, "
      << link_descriptors << " before the aborted downloads";
  ExpectServesAfter("aborted downloads");
}

// Wrong-token flood on the front door: 8 attackers retry Auth with a wrong token for 3 s.
// Failures are rate-limited per source and logged in aggregate.
TEST_F(ZlayerAbuse, WrongTokenFloodIsRateLimitedAndLoggedInAggregate) {
  ASSERT_NO_FATAL_FAILURE(stack_.StartServer());
  ASSERT_NO_FATAL_FAILURE(stack_.StartLink());
  const std::string auth = ZlayerAuthFrame("tun_not_the_token");
  std::atomic<int> attempts{0};
  std::atomic<int> answered{0};
  const std::size_t log_before = stack_.server.Output().size();
  const Observation o = Attack(
      [&] {
        const auto end = Clock::now() + 3s;
        RunParallel(8, 8, [&](int) {
          while (Clock::now() < end) {
            ++attempts;
            const int fd = OpenWebSocket(stack_.control_port, kPath, 1s);
            if (fd < 0) continue;
            std::string reply;
            if (WriteAll(fd, auth, 1s)) WaitClosed(fd, 1s, &reply);
            // An unmasked binary frame (0x82, short length) carrying AuthFail (0x03).
            if (reply.size() > 2 && reply[0] == '\x82' && reply[2] == '\x03') ++answered;
            ::close(fd);
          }
        });
      },
      [&] { return Legitimate(); });
  ExpectHeld(o, 32 * kMiB, "wrong-token flood");
  std::cout << "[ abuse    ] wrong tokens: " << attempts << " attempts, " << answered
            << " answered\n";
  EXPECT_GT(attempts.load(), 100) << "the flood did not run";
  EXPECT_LE(answered.load(), 50);
  const std::string log = stack_.server.Output().substr(log_before);
  EXPECT_LE(CountLines(log, "refused"), 20) << "wrong tokens logged one line each";
  EXPECT_EQ(log.find("tun_not_the_token"), std::string::npos) << "token leaked into the log";
  ExpectServesAfter("wrong-token flood");
}

// Descriptor exhaustion (issue 14, defect 2: after one EMFILE the public port never accepted
// again): the server runs with 96 descriptors; 300 idle connections on the public port and
// 100 on the front door. It does not spin, an existing keep-alive public connection keeps
// working, and after the attackers leave the public port and the front door accept again.
TEST_F(ZlayerAbuse, DescriptorExhaustionOnPublicAndControlPortsRecovers) {
  ASSERT_NO_FATAL_FAILURE(stack_.StartServer({.limits = {.max_open_files = 96}}));
  ASSERT_NO_FATAL_FAILURE(stack_.StartLink());
  KeepAliveClient existing(stack_.public_port, "web");
  ASSERT_EQ(existing.Get("/bytes/10").status, 200);
  const std::size_t log_before = stack_.server.Output().size();
  SocketSet idle;
  const Observation o = Attack(
      [&] {
        OpenIdle(stack_.public_port, 300, idle);
        OpenIdle(stack_.control_port, 100, idle);
        std::this_thread::sleep_for(4s);
      },
      [&] { return existing.Get("/bytes/1000"); });
  ExpectHeld(o, 32 * kMiB, "descriptor exhaustion");
  EXPECT_LT(o.cpu_seconds, 0.5) << "the server spins while out of descriptors";
  const std::string log = stack_.server.Output().substr(log_before);
  EXPECT_LT(std::count(log.begin(), log.end(), '\n'), 100)
      << "log lines while out of descriptors:\n"
      << log.substr(0, 2000);
  idle.CloseAll();
  EXPECT_TRUE(WaitUntil([&] { return stack_.Get("/bytes/100").status == 200; }, 5s))
      << "the public port does not accept again";
  EXPECT_TRUE(WaitUntil(
      [&] {
        const int fd = OpenWebSocket(stack_.control_port, kPath, 1s);
        if (fd >= 0) ::close(fd);
        return fd >= 0;
      },
      5s))
      << "the front door does not accept again";
  ExpectServesAfter("descriptor exhaustion");
}

}  // namespace
}  // namespace tunnelkit::abuse
