#include "tunnelkit/session/supervisor.hpp"

#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace tunnelkit::session {
namespace {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

awaitable<void> Sleep(milliseconds duration) {
  asio::steady_timer timer(co_await asio::this_coro::executor, duration);
  co_await timer.async_wait(use_awaitable);
}

long MillisSince(Clock::time_point start) {
  return static_cast<long>(std::chrono::duration_cast<milliseconds>(Clock::now() - start).count());
}

BackoffPolicy FastPolicy() {
  BackoffPolicy policy;
  policy.base = milliseconds(20);
  policy.factor = 2.0;
  policy.cap = milliseconds(1000);
  policy.jitter = 0.0;
  policy.healthy_after = milliseconds(10000);
  return policy;
}

Supervisor::Options FastOptions(BackoffPolicy policy = FastPolicy()) {
  Supervisor::Options options;
  options.name = "test link";
  options.backoff = policy;
  options.seed = 1;
  return options;
}

// Runs the supervisor on io until it finishes (bounded), returning its result.
SupervisorResult RunToEnd(asio::io_context& io, Supervisor& supervisor,
                          milliseconds bound = milliseconds(5000)) {
  std::optional<SupervisorResult> result;
  supervisor.Start([&](SupervisorResult r) { result = std::move(r); });
  io.run_for(bound);
  EXPECT_TRUE(result.has_value()) << "supervisor did not finish within " << bound.count() << " ms";
  return result.value_or(SupervisorResult{SupervisorEnd::kStopped, "did not finish"});
}

struct Recorder {
  std::vector<LinkStateChange> changes;
  void Attach(Supervisor& supervisor) {
    supervisor.AddObserver([this](const LinkStateChange& change) { changes.push_back(change); });
  }
  std::vector<std::string> States() const {
    std::vector<std::string> names;
    for (const auto& change : changes) names.push_back(LinkStateName(change.state));
    return names;
  }
  std::vector<long> RetryDelays() const {
    std::vector<long> delays;
    for (const auto& change : changes) {
      if (change.state == LinkState::kDisconnected) delays.push_back(change.retry_in.count());
    }
    return delays;
  }
};

TEST(SupervisorTest, ReconnectsAfterTransientFailuresWithIncreasingDelays) {
  asio::io_context io;
  std::vector<Clock::time_point> starts;
  Supervisor supervisor(io.get_executor(), FastOptions(),
                        [&](SessionControl& control) -> awaitable<SessionOutcome> {
                          starts.push_back(Clock::now());
                          if (control.attempt() <= 3) {
                            co_return SessionOutcome::Transient("connection refused");
                          }
                          co_return SessionOutcome::Stopped("server said goodbye");
                        });
  Recorder recorder;
  recorder.Attach(supervisor);
  SupervisorResult result = RunToEnd(io, supervisor);

  EXPECT_EQ(result.kind, SupervisorEnd::kStopped);
  EXPECT_EQ(result.reason, "server said goodbye");
  EXPECT_EQ(result.attempts, 4u);
  EXPECT_EQ(result.reconnects, 3u);
  EXPECT_EQ(supervisor.reconnects(), 3u);
  EXPECT_EQ(ExitStatusFor(result), 0);
  ASSERT_EQ(starts.size(), 4u);
  const long expected[] = {20, 40, 80};
  for (int i = 0; i < 3; ++i) {
    const auto gap = std::chrono::duration_cast<milliseconds>(starts[i + 1] - starts[i]).count();
    EXPECT_GE(gap, expected[i]) << "gap " << i;
    EXPECT_LT(gap, expected[i] + 200) << "gap " << i;
  }
  EXPECT_EQ(recorder.RetryDelays(), (std::vector<long>{20, 40, 80}));
  EXPECT_EQ(recorder.States(),
            (std::vector<std::string>{"connecting", "disconnected", "connecting", "disconnected",
                                      "connecting", "disconnected", "connecting", "stopped"}));
  EXPECT_EQ(recorder.changes[1].reason, "connection refused");
  EXPECT_EQ(supervisor.state(), LinkState::kStopped);
}

TEST(SupervisorTest, HealthySessionResetsBackoffShortOneDoesNot) {
  asio::io_context io;
  BackoffPolicy policy = FastPolicy();
  policy.healthy_after = milliseconds(40);
  std::vector<std::uint32_t> retries_seen;
  Supervisor supervisor(io.get_executor(), FastOptions(policy),
                        [&](SessionControl& control) -> awaitable<SessionOutcome> {
                          retries_seen.push_back(control.retries_used());
                          switch (control.attempt()) {
                            case 1:
                            case 2:
                              co_return SessionOutcome::Transient("refused");
                            case 3:  // up, but not long enough to count as healthy
                              control.MarkConnected("short");
                              co_await Sleep(milliseconds(5));
                              co_return SessionOutcome::Transient("reset by peer");
                            case 4:  // healthy
                              control.MarkConnected("long");
                              co_await Sleep(milliseconds(60));
                              co_return SessionOutcome::Transient("heartbeat timeout");
                            case 5:
                              co_return SessionOutcome::Transient("refused");
                            default:
                              co_return SessionOutcome::Stopped();
                          }
                        });
  Recorder recorder;
  recorder.Attach(supervisor);
  SupervisorResult result = RunToEnd(io, supervisor);
  EXPECT_EQ(result.kind, SupervisorEnd::kStopped);
  EXPECT_EQ(result.attempts, 6u);
  // 20, 40, 80 (short session kept growing), 20 (reset after the healthy one), 40.
  EXPECT_EQ(recorder.RetryDelays(), (std::vector<long>{20, 40, 80, 20, 40}));
  EXPECT_EQ(retries_seen, (std::vector<std::uint32_t>{0, 1, 2, 3, 1, 2}));
  std::vector<std::string> connected_details;
  for (const auto& change : recorder.changes) {
    if (change.state == LinkState::kConnected) connected_details.push_back(change.reason);
  }
  EXPECT_EQ(connected_details, (std::vector<std::string>{"short", "long"}));
}

TEST(SupervisorTest, PermanentFailureEndsAtOnceWithTypedResult) {
  asio::io_context io;
  int calls = 0;
  Supervisor supervisor(io.get_executor(), FastOptions(),
                        [&](SessionControl& control) -> awaitable<SessionOutcome> {
                          ++calls;
                          if (control.attempt() == 1) co_return SessionOutcome::Transient("reset");
                          co_return SessionOutcome::Permanent("token rejected");
                        });
  Recorder recorder;
  recorder.Attach(supervisor);
  const auto start = Clock::now();
  SupervisorResult result = RunToEnd(io, supervisor);
  EXPECT_LT(MillisSince(start), 500);
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(result.kind, SupervisorEnd::kPermanentFailure);
  EXPECT_TRUE(result.failed());
  EXPECT_EQ(result.reason, "token rejected");
  EXPECT_EQ(result.attempts, 2u);
  EXPECT_EQ(ExitStatusFor(result), kExitPermanentFailure);
  EXPECT_EQ(result.Describe(), "permanent failure: token rejected (after 2 attempts)");
  EXPECT_EQ(supervisor.state(), LinkState::kFailed);
  ASSERT_FALSE(recorder.changes.empty());
  EXPECT_EQ(recorder.changes.back().state, LinkState::kFailed);
  EXPECT_EQ(recorder.changes.back().reason, "token rejected");
  EXPECT_EQ(recorder.RetryDelays(), (std::vector<long>{20}));
}

TEST(SupervisorTest, GivesUpAfterMaxAttemptsWithTypedResult) {
  asio::io_context io;
  BackoffPolicy policy = FastPolicy();
  policy.base = milliseconds(10);
  policy.max_attempts = 3;
  int calls = 0;
  Supervisor supervisor(io.get_executor(), FastOptions(policy),
                        [&](SessionControl&) -> awaitable<SessionOutcome> {
                          ++calls;
                          co_return SessionOutcome::Transient("connection refused");
                        });
  SupervisorResult result = RunToEnd(io, supervisor);
  EXPECT_EQ(calls, 4);  // the first attempt and three retries
  EXPECT_EQ(result.kind, SupervisorEnd::kAttemptsExhausted);
  EXPECT_EQ(result.attempts, 4u);
  EXPECT_EQ(result.reconnects, 3u);
  EXPECT_NE(result.reason.find("connection refused"), std::string::npos) << result.reason;
  EXPECT_NE(result.reason.find("3 retries"), std::string::npos) << result.reason;
  EXPECT_EQ(ExitStatusFor(result), kExitAttemptsExhausted);
  EXPECT_EQ(supervisor.state(), LinkState::kFailed);
}

TEST(SupervisorTest, StopInterruptsBackoffWaitQuickly) {
  asio::io_context io;
  BackoffPolicy policy = FastPolicy();
  policy.base = milliseconds(10000);
  policy.cap = milliseconds(10000);
  Supervisor supervisor(io.get_executor(), FastOptions(policy),
                        [&](SessionControl&) -> awaitable<SessionOutcome> {
                          co_return SessionOutcome::Transient("refused");
                        });
  asio::steady_timer stopper(io);
  supervisor.AddObserver([&](const LinkStateChange& change) {
    if (change.state != LinkState::kDisconnected) return;
    stopper.expires_after(milliseconds(20));
    stopper.async_wait([&](boost::system::error_code) { supervisor.Stop(); });
  });
  const auto start = Clock::now();
  SupervisorResult result = RunToEnd(io, supervisor);
  EXPECT_LT(MillisSince(start), 1000);
  EXPECT_GE(MillisSince(start), 20);
  EXPECT_EQ(result.kind, SupervisorEnd::kStopped);
  EXPECT_EQ(result.attempts, 1u);
  EXPECT_EQ(supervisor.state(), LinkState::kStopped);
}

TEST(SupervisorTest, StopEndsTheRunningSessionThroughOnStop) {
  asio::io_context io;
  bool handler_ran = false;
  Supervisor supervisor(
      io.get_executor(), FastOptions(), [&](SessionControl& control) -> awaitable<SessionOutcome> {
        asio::steady_timer forever(co_await asio::this_coro::executor, milliseconds(60000));
        control.OnStop([&] {
          handler_ran = true;
          forever.cancel();
        });
        control.MarkConnected("edge test01");
        boost::system::error_code ec;
        co_await forever.async_wait(asio::redirect_error(use_awaitable, ec));
        // Whatever the session says after a stop, the supervisor reports a stop.
        co_return SessionOutcome::Transient("cancelled");
      });
  asio::steady_timer stopper(io, milliseconds(30));
  stopper.async_wait([&](boost::system::error_code) {
    EXPECT_EQ(supervisor.state(), LinkState::kConnected);
    const LinkStatus status = supervisor.Status();
    EXPECT_EQ(status.name, "test link");
    EXPECT_EQ(status.state, LinkState::kConnected);
    EXPECT_EQ(status.detail, "edge test01");
    EXPECT_EQ(status.attempts, 1u);
    EXPECT_GE(status.connected_for.count(), 25);
    supervisor.Stop();
  });
  const auto start = Clock::now();
  SupervisorResult result = RunToEnd(io, supervisor);
  EXPECT_LT(MillisSince(start), 1000);
  EXPECT_TRUE(handler_ran);
  EXPECT_EQ(result.kind, SupervisorEnd::kStopped);
  EXPECT_EQ(result.attempts, 1u);
}

TEST(SupervisorTest, OnStopAfterStopRunsAtOnce) {
  asio::io_context io;
  bool handler_ran = false;
  Supervisor* self = nullptr;
  Supervisor supervisor(io.get_executor(), FastOptions(),
                        [&](SessionControl& control) -> awaitable<SessionOutcome> {
                          self->Stop();  // e.g. a signal arrived while connecting
                          EXPECT_TRUE(control.stop_requested());
                          control.OnStop([&] { handler_ran = true; });
                          co_return SessionOutcome::Stopped();
                        });
  self = &supervisor;
  SupervisorResult result = RunToEnd(io, supervisor);
  EXPECT_TRUE(handler_ran);
  EXPECT_EQ(result.kind, SupervisorEnd::kStopped);
}

TEST(SupervisorTest, StopBeforeRunMakesNoAttempt) {
  asio::io_context io;
  int calls = 0;
  Supervisor supervisor(io.get_executor(), FastOptions(),
                        [&](SessionControl&) -> awaitable<SessionOutcome> {
                          ++calls;
                          co_return SessionOutcome::Stopped();
                        });
  supervisor.Stop();
  SupervisorResult result = RunToEnd(io, supervisor);
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(result.kind, SupervisorEnd::kStopped);
  EXPECT_EQ(result.attempts, 0u);
}

TEST(SupervisorTest, ExceptionFromSessionIsATransientFailure) {
  asio::io_context io;
  Supervisor supervisor(io.get_executor(), FastOptions(),
                        [&](SessionControl& control) -> awaitable<SessionOutcome> {
                          if (control.attempt() == 1) throw std::runtime_error("bad frame");
                          co_return SessionOutcome::Stopped();
                        });
  Recorder recorder;
  recorder.Attach(supervisor);
  SupervisorResult result = RunToEnd(io, supervisor);
  EXPECT_EQ(result.kind, SupervisorEnd::kStopped);
  EXPECT_EQ(result.attempts, 2u);
  ASSERT_GE(recorder.changes.size(), 2u);
  EXPECT_EQ(recorder.changes[1].state, LinkState::kDisconnected);
  EXPECT_NE(recorder.changes[1].reason.find("bad frame"), std::string::npos);
}

// The session is a real TCP connection on 127.0.0.1. The test's listener closes the connection
// and itself, stays closed for a while (connects are refused), then listens again on the same
// port; the supervisor must get through to it again.
TEST(SupervisorTest, ReconnectsToTcpListenerClosedAndReopenedOnSamePort) {
  using asio::ip::tcp;
  asio::io_context io;
  const auto loopback = asio::ip::make_address("127.0.0.1");

  auto open_acceptor = [&](unsigned short port) {
    tcp::acceptor acceptor(io);
    acceptor.open(tcp::v4());
    acceptor.set_option(asio::socket_base::reuse_address(true));
    acceptor.bind(tcp::endpoint(loopback, port));
    acceptor.listen();
    return acceptor;
  };
  tcp::acceptor acceptor = open_acceptor(0);
  const unsigned short port = acceptor.local_endpoint().port();

  BackoffPolicy policy = FastPolicy();
  policy.base = milliseconds(10);
  policy.cap = milliseconds(40);
  Supervisor supervisor(io.get_executor(), FastOptions(policy),
                        [&](SessionControl& control) -> awaitable<SessionOutcome> {
                          tcp::socket socket(co_await asio::this_coro::executor);
                          control.OnStop([&] {
                            boost::system::error_code ignored;
                            socket.close(ignored);
                          });
                          boost::system::error_code ec;
                          co_await socket.async_connect(tcp::endpoint(loopback, port),
                                                        asio::redirect_error(use_awaitable, ec));
                          if (ec) co_return SessionOutcome::Transient("connect: " + ec.message());
                          control.MarkConnected("127.0.0.1:" + std::to_string(port));
                          const std::string hello =
                              "hello " + std::to_string(control.attempt()) + "\n";
                          co_await asio::async_write(socket, asio::buffer(hello),
                                                     asio::redirect_error(use_awaitable, ec));
                          char byte;
                          while (!ec) {
                            co_await socket.async_read_some(
                                asio::buffer(&byte, 1), asio::redirect_error(use_awaitable, ec));
                          }
                          if (control.stop_requested()) co_return SessionOutcome::Stopped();
                          co_return SessionOutcome::Transient("lost: " + ec.message());
                        });
  Recorder recorder;
  recorder.Attach(supervisor);
  bool saw_refused_live = false;
  supervisor.AddObserver([&](const LinkStateChange& change) {
    if (change.state == LinkState::kDisconnected &&
        change.reason.find("refused") != std::string::npos) {
      saw_refused_live = true;
    }
  });

  std::vector<std::string> greetings;
  int accepted = 0;
  auto server = [&]() -> awaitable<void> {
    for (int round = 0; round < 2; ++round) {
      tcp::socket peer = co_await acceptor.async_accept(use_awaitable);
      ++accepted;
      asio::streambuf line;
      co_await asio::async_read_until(peer, line, '\n', use_awaitable);
      greetings.emplace_back(asio::buffers_begin(line.data()), asio::buffers_end(line.data()));
      if (round == 0) {
        peer.close();
        acceptor.close();
        // Listen again only once the supervisor saw a refused connect (bounded wait).
        for (int i = 0; i < 400 && !saw_refused_live; ++i) co_await Sleep(milliseconds(5));
        acceptor = open_acceptor(port);
      } else {
        supervisor.Stop();
      }
    }
  };
  bool server_done = false;
  asio::co_spawn(io, server(), [&](std::exception_ptr error) {
    server_done = true;
    if (error) {
      try {
        std::rethrow_exception(error);
      } catch (const std::exception& e) {
        ADD_FAILURE() << "server: " << e.what();
      }
    }
  });
  SupervisorResult result = RunToEnd(io, supervisor);

  EXPECT_TRUE(server_done);
  EXPECT_EQ(accepted, 2);
  EXPECT_EQ(result.kind, SupervisorEnd::kStopped);
  ASSERT_EQ(greetings.size(), 2u);
  EXPECT_EQ(greetings[0], "hello 1\n");
  EXPECT_GE(result.attempts, 3u);  // at least one refused attempt between the two sessions
  EXPECT_EQ(greetings[1], "hello " + std::to_string(result.attempts) + "\n");
  bool saw_lost = false, saw_refused = false;
  for (const auto& change : recorder.changes) {
    if (change.state != LinkState::kDisconnected) continue;
    if (change.reason.rfind("lost:", 0) == 0) saw_lost = true;
    if (change.reason.find("refused") != std::string::npos) saw_refused = true;
  }
  EXPECT_TRUE(saw_lost);
  EXPECT_TRUE(saw_refused);
  int connected = 0;
  for (const auto& change : recorder.changes) connected += change.state == LinkState::kConnected;
  EXPECT_EQ(connected, 2);
}

}  // namespace
}  // namespace tunnelkit::session
