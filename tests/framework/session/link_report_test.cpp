#include "tunnelkit/session/link_report.hpp"

#include <string>

#include <gtest/gtest.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "tunnelkit/metrics/registry.hpp"

namespace tunnelkit::session {
namespace {

namespace asio = boost::asio;
using std::chrono::milliseconds;

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(LinkReportTest, MetricsFollowTheLink) {
  asio::io_context io;
  metrics::Registry registry;
  Supervisor::Options options;
  options.name = "ferro client";
  options.backoff.base = milliseconds(5);
  options.backoff.jitter = 0;
  options.seed = 1;
  std::string exposed_while_connected, json_while_connected;
  Supervisor* self = nullptr;
  Supervisor supervisor(io.get_executor(), options,
                        [&](SessionControl& control) -> asio::awaitable<SessionOutcome> {
                          if (control.attempt() < 3) co_return SessionOutcome::Transient("refused");
                          control.MarkConnected("127.0.0.1:7835");
                          exposed_while_connected = registry.Expose();
                          json_while_connected = LinkStatusJson(self->Status());
                          co_return SessionOutcome::Stopped();
                        });
  self = &supervisor;
  ExportLinkMetrics(supervisor, registry, "app", "server");
  std::optional<SupervisorResult> result;
  supervisor.Start([&](SupervisorResult r) { result = r; });
  io.run_for(milliseconds(2000));
  ASSERT_TRUE(result.has_value());

  EXPECT_TRUE(
      Contains(exposed_while_connected, "tunnelkit_link_up{tunnel=\"app\",link=\"server\"} 1"))
      << exposed_while_connected;
  EXPECT_TRUE(Contains(json_while_connected, "\"state\":\"connected\"")) << json_while_connected;
  EXPECT_TRUE(Contains(json_while_connected, "\"detail\":\"127.0.0.1:7835\""));
  EXPECT_TRUE(Contains(json_while_connected, "\"lastError\":\"refused\""));
  EXPECT_TRUE(Contains(json_while_connected, "\"reconnects\":2"));
  const std::string after = registry.Expose();
  EXPECT_TRUE(Contains(after, "tunnelkit_link_up{tunnel=\"app\",link=\"server\"} 0")) << after;
  EXPECT_TRUE(Contains(after, "tunnelkit_link_reconnects_total{tunnel=\"app\",link=\"server\"} 2"))
      << after;
  EXPECT_TRUE(Contains(after, "tunnelkit_link_failures_total{tunnel=\"app\",link=\"server\"} 2"))
      << after;
  EXPECT_TRUE(Contains(after, "tunnelkit_link_connects_total{tunnel=\"app\",link=\"server\"} 1"))
      << after;
}

TEST(LinkReportTest, StatusJson) {
  LinkStatus status;
  status.name = "edge conn 0";
  status.state = LinkState::kConnected;
  status.attempts = 3;
  status.reconnects = 2;
  status.last_reason = "bad \"frame\" \xff";
  status.detail = "lhr01";
  status.connected_for = milliseconds(1520);
  EXPECT_EQ(LinkStatusJson(status),
            "{\"attempts\":3,\"connectedForMs\":1520,\"detail\":\"lhr01\","
            "\"lastError\":\"bad \\\"frame\\\" \xef\xbf\xbd\",\"name\":\"edge conn 0\","
            "\"reconnects\":2,\"state\":\"connected\"}");
}

}  // namespace
}  // namespace tunnelkit::session
