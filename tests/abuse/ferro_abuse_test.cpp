// A real `tunnelctl serve --backend ferro` and its client on loopback, attacked by bounded-time
// clients on the control port and the public HTTP port. Every test asserts that the server
// stays alive, that its RSS grows by less than a stated bound, and that legitimate requests
// through the existing tunnel are served during and after the attack within a stated latency.
// docs/reliability.md lists what each test proves.
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>

#include "attacks.hpp"
#include "harness.hpp"

namespace tunnelkit::abuse {
namespace {

constexpr std::int64_t kMiB = 1024;  // in KiB, the unit of RssKib

class FerroAbuse : public ::testing::Test {
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
  FerroStack stack_;
};

// Malformed frames before authentication: each connection is closed by the server (within the
// 2 s handshake timeout at most), with a logged reason, and nothing else is disturbed.
TEST_F(FerroAbuse, MalformedControlFramesCloseOnlyTheirConnection) {
  ASSERT_NO_FATAL_FAILURE(stack_.StartServer({.flags = {"--handshake-timeout", "2s"}}));
  ASSERT_NO_FATAL_FAILURE(stack_.StartClient());
  const std::vector<Payload> payloads = {
      {"junk", Junk(4096, 1)},
      {"length 0", std::string("\0\0\0\0\0", 5)},
      {"length 16 MiB + 1", std::string("\x01\x00\x00\x01\x00", 5) + Junk(1000, 2)},
      {"unknown frame type 7", std::string("\x00\x00\x00\x05\x07", 5) + "abcd"},
      {"data before the handshake",
       std::string("\x00\x00\x00\x0a\x01\x00\x00\x00\x02\x00", 10) + "abcd"},
      {"bad bincode", FerroControlFrame(std::string("\xff\xff\xff\xff\xff", 5))},
      {"overlong varint", FerroControlFrame(std::string("\x00\xfb\x06\x00", 4) + "secret" +
                                            std::string("\x00\x01\x01\x01\x05", 5) + "basic")},
      {"truncated handshake", FerroHandshake("wrong-token").substr(0, 9)},
  };
  std::map<std::string, int> left_open;
  const Observation o =
      Attack([&] { left_open = LeftOpen(stack_.control_port, payloads, 200, 20, 4s); },
             [&] { return Legitimate(); });
  ExpectHeld(o, 32 * kMiB, "malformed control frames");
  ExpectNoneLeftOpen(left_open);
  EXPECT_NE(stack_.server.Output().find("handshake failed"), std::string::npos)
      << "no logged reason for a malformed frame";
  ExpectServesAfter("malformed control frames");
}

// Garbage, oversized heads and TLS records on the public HTTP port: each connection ends
// (an error status or a close) within 5 s.
TEST_F(FerroAbuse, GarbageOnThePublicPortIsRefused) {
  ASSERT_NO_FATAL_FAILURE(stack_.StartServer());
  ASSERT_NO_FATAL_FAILURE(stack_.StartClient());
  std::string many_headers = "GET / HTTP/1.1\r\nHost: app\r\n";
  for (int i = 0; i < 300; ++i) many_headers += "X-H" + std::to_string(i) + ": v\r\n";
  many_headers += "\r\n";
  const std::vector<Payload> payloads = {
      // Junk and a TLS ClientHello, each ended by a blank line (without one the server waits
      // for the rest of the head: there is no head timeout, see docs/reliability.md).
      {"junk", Junk(4096, 3) + "\r\n\r\n"},
      {"256 KiB header line",
       "GET / HTTP/1.1\r\nHost: app\r\nX-Long: " + std::string(256 * 1024, 'a') + "\r\n\r\n"},
      {"TLS ClientHello",
       std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11) + Junk(500, 4) + "\r\n\r\n"},
      {"300 headers", many_headers},
      {"two Host headers", "GET / HTTP/1.1\r\nHost: app\r\nHost: other\r\n\r\n"},
      {"Content-Length and chunked",
       "POST /echo HTTP/1.1\r\nHost: app\r\nContent-Length: 5\r\nTransfer-Encoding: "
       "chunked\r\n\r\n0\r\n\r\n"},
  };
  std::map<std::string, int> left_open;
  const Observation o =
      Attack([&] { left_open = LeftOpen(stack_.http_port, payloads, 180, 20, 5s); },
             [&] { return Legitimate(); });
  ExpectHeld(o, 32 * kMiB, "garbage on the public port");
  ExpectNoneLeftOpen(left_open);
  ExpectServesAfter("garbage on the public port");
}

// 40 connections each announce a 15 MiB handshake frame and send it, before any token check
// (issue 14, defect 3: 611 MB in 1.4 s). Pre-auth frames are capped small and unauthenticated
// connections are capped, so the server's RSS grows by less than 64 MiB.
TEST_F(FerroAbuse, PreAuthHugeHandshakeFramesStayBounded) {
  ASSERT_NO_FATAL_FAILURE(stack_.StartServer());
  ASSERT_NO_FATAL_FAILURE(stack_.StartClient());
  constexpr std::size_t kFrame = 15u * 1024 * 1024;
  const std::string chunk = Junk(1 << 20, 5);
  std::atomic<int> closed{0};
  const Observation o = Attack(
      [&] {
        RunParallel(40, 40, [&](int) {
          const int fd = ConnectFrom(stack_.control_port);
          if (fd < 0) {  // refused outright: also closed
            ++closed;
            return;
          }
          const std::string header = {0, static_cast<char>((kFrame + 1) >> 16),
                                      static_cast<char>((kFrame + 1) >> 8),
                                      static_cast<char>(kFrame + 1), 0};
          bool open = WriteAll(fd, header, 2s);
          const auto deadline = Clock::now() + 8s;
          for (std::size_t sent = 0; open && sent < kFrame && Clock::now() < deadline;
               sent += chunk.size()) {
            open = WriteAll(fd, chunk, 2s);
          }
          if (!open || WaitClosed(fd, 5s)) ++closed;
          ::close(fd);
        });
      },
      [&] { return Legitimate(); });
  ExpectHeld(o, 64 * kMiB, "pre-auth 15 MiB handshake frames x40");
  EXPECT_EQ(closed.load(), 40) << "huge handshake frames were not refused";
  ExpectServesAfter("pre-auth flood");
}

// Slowloris: 300 public connections trickle a request head, one header line each 200 ms for
// 8 s. Legitimate requests keep being served within a second; memory stays bounded.
TEST_F(FerroAbuse, SlowlorisHeadsDoNotStarveTheTunnel) {
  ASSERT_NO_FATAL_FAILURE(stack_.StartServer());
  ASSERT_NO_FATAL_FAILURE(stack_.StartClient());
  SocketSet trickling;
  const Observation o = Attack(
      [&] {
        for (int i = 0; i < 300; ++i) {
          const int fd = ConnectFrom(stack_.http_port);
          if (fd >= 0 && WriteAll(fd, "GET / HTTP/1.1\r\nHost: app\r\n", 1s)) trickling.Add(fd);
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
  ExpectHeld(o, 48 * kMiB, "slowloris x300");
  ExpectServesAfter("slowloris");
}

// Slow POST: 100 requests send their head and 1 KiB of a 1 MiB body, then stall; with a 2 s
// body idle timeout (issue 14, defect 5) each exchange is ended (408 or close) within 6 s and
// the ferro client gives back the origin connections they held. Half go to `/`, whose origin
// waits for the whole body (the server answers 408); half to `/echo`, whose origin streams
// its response while the body arrives: once the body stalls that exchange is idle both ways
// and must end too, or it pins an origin connection for as long as the client likes.
TEST_F(FerroAbuse, StalledRequestBodiesAreTimedOut) {
  ASSERT_NO_FATAL_FAILURE(stack_.StartServer({.flags = {"--request-body-timeout", "2s"}}));
  ASSERT_NO_FATAL_FAILURE(stack_.StartClient());
  const int client_descriptors = DescriptorsAfter(stack_.client.pid());
  const std::vector<std::string> targets = {"/", "/echo"};
  SocketSet stalled;
  std::vector<std::string> stalled_target;
  std::mutex mutex;
  std::map<std::string, int> left_open;
  const Observation o = Attack(
      [&] {
        for (int i = 0; i < 100; ++i) {
          const std::string& target = targets[static_cast<std::size_t>(i) % targets.size()];
          const int fd = ConnectFrom(stack_.http_port);
          if (fd >= 0 && WriteAll(fd,
                                  "POST " + target +
                                      " HTTP/1.1\r\nHost: app\r\nContent-Length: 1048576\r\n\r\n" +
                                      Junk(1024, 6),
                                  1s)) {
            stalled.Add(fd);
            stalled_target.push_back(target);
          }
        }
        RunParallel(static_cast<int>(stalled.size()), 50, [&](int i) {
          const auto k = static_cast<std::size_t>(i);
          if (!WaitClosed(stalled.fds()[k], 6s)) {
            std::lock_guard<std::mutex> lock(mutex);
            ++left_open[stalled_target[k]];
          }
        });
      },
      [&] { return Legitimate(); });
  ExpectHeld(o, 48 * kMiB, "slow POST x100");
  EXPECT_EQ(stalled.size(), 100u);
  for (const auto& [target, count] : left_open) {
    ADD_FAILURE() << count << " stalled POSTs to " << target << " still open 6 s later";
  }
  EXPECT_TRUE(WaitUntil(
      [&] { return test::OpenDescriptors(stack_.client.pid()) <= client_descriptors + 4; }, 5s))
      << "the ferro client still holds " << test::OpenDescriptors(stack_.client.pid())
      << " descriptors (" << client_descriptors << " before)";
  stalled.CloseAll();
  ExpectServesAfter("slow POST");
}

// Slow read: 50 public clients ask for 200 MB each and read nothing (issue 14, defect 4:
// 3.1 MB of server memory each). The server buffers at most the stream window per connection
// (1 MiB by default), so 50 of them stay under 80 MiB.
TEST_F(FerroAbuse, StalledReadersOfBigResponsesStayBounded) {
  ASSERT_NO_FATAL_FAILURE(stack_.StartServer());
  ASSERT_NO_FATAL_FAILURE(stack_.StartClient());
  SocketSet readers;
  const Observation o = Attack(
      [&] {
        for (int i = 0; i < 50; ++i) {
          const int fd = ConnectFrom(stack_.http_port);
          if (fd < 0) continue;
          const int small = 4096;
          ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
          if (WriteAll(fd, "GET /bytes/209715200 HTTP/1.1\r\nHost: app\r\n\r\n", 1s))
            readers.Add(fd);
        }
        std::this_thread::sleep_for(6s);  // every pipe fills up and stalls
      },
      [&] { return Legitimate(); });
  EXPECT_EQ(readers.size(), 50u);
  ExpectHeld(o, 80 * kMiB, "stalled readers x50");
  readers.CloseAll();
  ExpectServesAfter("stalled readers");
}

// Aborted downloads (issue 14, defect 1): 300 public clients read 1 MiB of an 8 MiB response
// and close. The ferro client runs with 256 descriptors, as in the report where the tunnel
// answered 502 for good after about 260 of them; its descriptors come back to the baseline.
TEST_F(FerroAbuse, AbortedDownloadsReleaseTheirStreams) {
  ASSERT_NO_FATAL_FAILURE(stack_.StartServer());
  ASSERT_NO_FATAL_FAILURE(stack_.StartClient({.limits = {.max_open_files = 256}}));
  const int client_descriptors = DescriptorsAfter(stack_.client.pid());
  std::atomic<int> aborted{0};
  const Observation o = Attack(
      [&] {
        aborted =
            AbortedDownloads(stack_.http_port, "GET /bytes/8388608 HTTP/1.1\r\nHost: app\r\n\r\n",
                             300, 10, 1u << 20);
      },
      [&] { return Legitimate(); });
  ExpectHeld(o, 64 * kMiB, "aborted downloads x300");
  EXPECT_EQ(aborted.load(), 300);
  EXPECT_TRUE(WaitUntil(
      [&] { return test::OpenDescriptors(stack_.client.pid()) <= client_descriptors + 4; }, 10s))
      << "the ferro client holds " << test::OpenDescriptors(stack_.client.pid()) << " descriptors, "
      << client_descriptors << " before the aborted downloads";
  ExpectServesAfter("aborted downloads");
}

// Wrong-token flood (issue 14, defect 6: 18k handshakes/s, one log line each): 8 attackers
// retry for 3 s. Failures are rate-limited per source (few InvalidToken answers reach the
// attacker) and logged in aggregate; a client with the right token still registers.
TEST_F(FerroAbuse, WrongTokenFloodIsRateLimitedAndLoggedInAggregate) {
  ASSERT_NO_FATAL_FAILURE(stack_.StartServer());
  ASSERT_NO_FATAL_FAILURE(stack_.StartClient());
  const std::string handshake = FerroHandshake("not-the-token");
  std::atomic<int> attempts{0};
  std::atomic<int> answered{0};
  const std::size_t log_before = stack_.server.Output().size();
  const Observation o = Attack(
      [&] {
        const auto end = Clock::now() + 3s;
        RunParallel(8, 8, [&](int) {
          while (Clock::now() < end) {
            const int fd = ConnectFrom(stack_.control_port);
            if (fd < 0) continue;
            ++attempts;
            std::string reply;
            if (WriteAll(fd, handshake, 1s)) WaitClosed(fd, 1s, &reply);
            // HandshakeAck (variant 1) with status InvalidToken.
            if (reply.size() > 6 && reply[4] == 0 && reply[5] == 1) ++answered;
            ::close(fd);
          }
        });
      },
      [&] { return Legitimate(); });
  ExpectHeld(o, 32 * kMiB, "wrong-token flood");
  std::cout << "[ abuse    ] wrong tokens: " << attempts << " attempts, " << answered
            << " answered\n";
  EXPECT_GT(attempts.load(), 100) << "the flood did not run";
  // A burst and about one failure a second per source get checked; the rest are refused.
  EXPECT_LE(answered.load(), 50);
  const std::string log = stack_.server.Output().substr(log_before);
  EXPECT_LE(CountLines(log, "invalid token"), 20) << "wrong tokens logged one line each";
  EXPECT_EQ(log.find("not-the-token"), std::string::npos) << "token leaked into the log";
  // The right token from another address is not affected.
  test::ChildProcess second(stack_.ClientArgs(0, FerroStack::kToken, "app2"));
  EXPECT_TRUE(stack_.server.WaitForOutput("tunnel registered: app2", 5s));
  ExpectServesAfter("wrong-token flood");
}

// Descriptor exhaustion (issue 14, defect 2): the server runs with 96 descriptors and gets
// 300 idle public connections and 100 idle control connections. While out of descriptors it
// does not spin (under 0.5 s of CPU in 4 s) nor flood its log, an existing keep-alive public
// connection keeps being served, and once the attackers leave both ports accept again.
TEST_F(FerroAbuse, DescriptorExhaustionOnBothPortsRecovers) {
  ASSERT_NO_FATAL_FAILURE(stack_.StartServer({.limits = {.max_open_files = 96}}));
  ASSERT_NO_FATAL_FAILURE(stack_.StartClient());
  KeepAliveClient existing(stack_.http_port, "app");
  ASSERT_EQ(existing.Get("/bytes/10").status, 200);
  const std::size_t log_before = stack_.server.Output().size();
  SocketSet idle;
  const Observation o = Attack(
      [&] {
        OpenIdle(stack_.http_port, 300, idle);
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
  test::ChildProcess second(stack_.ClientArgs(0, FerroStack::kToken, "app2"));
  EXPECT_TRUE(stack_.server.WaitForOutput("tunnel registered: app2", 5s))
      << "the control port does not accept again";
  ExpectServesAfter("descriptor exhaustion");
}

}  // namespace
}  // namespace tunnelkit::abuse
