// The metrics registry: exposition golden text, escaping, histogram buckets, the label cap
// folding into "other", registration rules, and concurrent updates through handles.
#include "tunnelkit/metrics/registry.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <thread>

namespace tunnelkit::metrics {
namespace {

TEST(Metrics, ExpositionGoldenText) {
  Registry registry;
  auto& requests =
      registry.AddCounter("tunnelkit_requests_total", "Requests proxied.", {"backend", "status"});
  requests.With({"ferro", "200"}).Inc(3);
  requests.With({"ferro", "502"}).Inc();
  requests.With({"cloudflare", "200"}).Inc(2);
  auto& streams = registry.AddGauge("tunnelkit_streams", "Open streams.");
  streams.With({}).Set(5);
  streams.With({}).Dec();
  auto& latency = registry.AddHistogram("tunnelkit_latency_seconds", "Time to first byte.",
                                        {"route"}, {0.1, 0.5, 1});
  auto api = latency.With({"api"});
  api.Observe(0.05);
  api.Observe(0.1);  // a value equal to a bound falls in that bucket
  api.Observe(0.7);
  api.Observe(3);
  const std::string expected =
      "# HELP tunnelkit_build_info_test Escaping: back\\\\slash and\\nnewline.\n"
      "# TYPE tunnelkit_build_info_test gauge\n"
      "tunnelkit_build_info_test{version=\"a\\\"b\\\\c\\nd\"} 1\n"
      "# HELP tunnelkit_latency_seconds Time to first byte.\n"
      "# TYPE tunnelkit_latency_seconds histogram\n"
      "tunnelkit_latency_seconds_bucket{route=\"api\",le=\"0.1\"} 2\n"
      "tunnelkit_latency_seconds_bucket{route=\"api\",le=\"0.5\"} 2\n"
      "tunnelkit_latency_seconds_bucket{route=\"api\",le=\"1\"} 3\n"
      "tunnelkit_latency_seconds_bucket{route=\"api\",le=\"+Inf\"} 4\n"
      "tunnelkit_latency_seconds_sum{route=\"api\"} 3.85\n"
      "tunnelkit_latency_seconds_count{route=\"api\"} 4\n"
      "# HELP tunnelkit_requests_total Requests proxied.\n"
      "# TYPE tunnelkit_requests_total counter\n"
      "tunnelkit_requests_total{backend=\"cloudflare\",status=\"200\"} 2\n"
      "tunnelkit_requests_total{backend=\"ferro\",status=\"200\"} 3\n"
      "tunnelkit_requests_total{backend=\"ferro\",status=\"502\"} 1\n"
      "# HELP tunnelkit_streams Open streams.\n"
      "# TYPE tunnelkit_streams gauge\n"
      "tunnelkit_streams 4\n";
  registry.AddGauge("tunnelkit_build_info_test", "Escaping: back\\slash and\nnewline.", {"version"})
      .With({"a\"b\\c\nd"})
      .Set(1);
  EXPECT_EQ(registry.Expose(), expected);
}

TEST(Metrics, HistogramWithoutLabelsAndDefaultBuckets) {
  Registry registry;
  auto h = registry.AddHistogram("op_seconds", "op").With({});
  h.Observe(0.003);
  h.Observe(0.2);
  h.Observe(20);
  EXPECT_EQ(h.Count(), 3u);
  EXPECT_DOUBLE_EQ(h.Sum(), 20.203);
  const auto text = registry.Expose();
  EXPECT_NE(text.find("op_seconds_bucket{le=\"0.005\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("op_seconds_bucket{le=\"0.1\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("op_seconds_bucket{le=\"0.25\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("op_seconds_bucket{le=\"10\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("op_seconds_bucket{le=\"+Inf\"} 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("op_seconds_count 3\n"), std::string::npos) << text;
  EXPECT_EQ(ExponentialBuckets(1, 2, 4), (std::vector<double>{1, 2, 4, 8}));
}

TEST(Metrics, LabelCapFoldsNewValuesIntoOther) {
  Registry registry(RegistryOptions{3});
  auto& hosts = registry.AddCounter("hits_total", "hits", {"host", "code"});
  for (int i = 0; i < 10; ++i) hosts.With({"h" + std::to_string(i), "200"}).Inc();
  hosts.With({"h1", "200"}).Inc();      // an existing set keeps its own series
  EXPECT_EQ(hosts.series_count(), 4u);  // h0, h1, h2 and other
  EXPECT_EQ(hosts.folded(), 7u);
  const auto text = registry.Expose();
  EXPECT_NE(text.find("hits_total{host=\"h1\",code=\"200\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("hits_total{host=\"other\",code=\"other\"} 7\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("h3"), std::string::npos) << text;
  // A per-family cap overrides the registry's.
  auto& wide = registry.AddGauge("wide", "wide", {"k"}, 100);
  for (int i = 0; i < 50; ++i) wide.With({std::to_string(i)}).Set(i);
  EXPECT_EQ(wide.series_count(), 50u);
  EXPECT_EQ(wide.folded(), 0u);
}

TEST(Metrics, RegistrationRules) {
  Registry registry;
  auto& a = registry.AddCounter("same_total", "x", {"k"});
  auto& b = registry.AddCounter("same_total", "x", {"k"});
  EXPECT_EQ(&a, &b);
  a.With({"v"}).Inc();
  EXPECT_EQ(b.With({"v"}).Value(), 1u);
  EXPECT_THROW(registry.AddGauge("same_total", "x", {"k"}), std::invalid_argument);
  EXPECT_THROW(registry.AddCounter("same_total", "x", {"other"}), std::invalid_argument);
  EXPECT_THROW(registry.AddCounter("9bad", "x"), std::invalid_argument);
  EXPECT_THROW(registry.AddCounter("bad-name", "x"), std::invalid_argument);
  EXPECT_THROW(registry.AddCounter("ok_total", "x", {"__reserved"}), std::invalid_argument);
  EXPECT_THROW(registry.AddHistogram("h", "x", {"le"}), std::invalid_argument);
  EXPECT_THROW(registry.AddHistogram("h2", "x", {}, {1, 1}), std::invalid_argument);
  EXPECT_THROW(a.With({"v", "extra"}), std::invalid_argument);
  // A default handle ignores updates.
  Counter none;
  none.Inc();
  EXPECT_EQ(none.Value(), 0u);
}

TEST(Metrics, FormatsValuesAsPrometheusDoes) {
  EXPECT_EQ(FormatValue(1), "1");
  EXPECT_EQ(FormatValue(-2), "-2");
  EXPECT_EQ(FormatValue(0.25), "0.25");
  EXPECT_EQ(FormatValue(1e20), "1e+20");
  EXPECT_EQ(FormatValue(INFINITY), "+Inf");
  EXPECT_EQ(FormatValue(-INFINITY), "-Inf");
  EXPECT_EQ(FormatValue(NAN), "NaN");
}

TEST(Metrics, ConcurrentUpdatesThroughHandlesAreExact) {
  Registry registry;
  auto counter = registry.AddCounter("c_total", "c").With({});
  auto gauge = registry.AddGauge("g", "g").With({});
  auto histogram = registry.AddHistogram("h_seconds", "h", {}, {1}).With({});
  auto& family = registry.AddCounter("by_thread_total", "t", {"thread"}, 2);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      auto mine = family.With({std::to_string(t)});
      for (int i = 0; i < 10000; ++i) {
        counter.Inc();
        gauge.Add(1);
        histogram.Observe(i % 2 ? 0.5 : 2);
        mine.Inc();
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(counter.Value(), 40000u);
  EXPECT_DOUBLE_EQ(gauge.Value(), 40000);
  EXPECT_EQ(histogram.Count(), 40000u);
  EXPECT_DOUBLE_EQ(histogram.Sum(), 50000);
  const auto text = registry.Expose();
  EXPECT_NE(text.find("h_seconds_bucket{le=\"1\"} 20000\n"), std::string::npos) << text;
  EXPECT_NE(text.find("by_thread_total{thread=\"other\"} 20000\n"), std::string::npos) << text;
}

}  // namespace
}  // namespace tunnelkit::metrics
