// Metrics: counters, gauges and histograms with labels, exposed in the Prometheus text format
// 0.0.4. Thread-safe. Look a series up once (a mutex and a hash lookup), keep the handle, and
// update it on the hot path with one relaxed atomic operation.
//
//   auto& requests = registry.AddCounter("tunnelkit_requests_total", "Requests proxied",
//                                        {"backend", "status"});
//   metrics::Counter ok = requests.With({"ferro", "200"});   // once
//   ok.Inc();                                                // per request
//
// Cardinality cap: each family keeps at most `max_label_sets` distinct label-value sets
// (RegistryOptions, default 1000). Past the cap, a new set folds into the series whose every
// label value is "other", so a hostile or buggy label source cannot grow memory without bound.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace tunnelkit::metrics {

inline constexpr const char* kFoldedLabelValue = "other";

// Series cells. Owned by their family; addresses never change once created.
struct CounterCell {
  std::atomic<std::uint64_t> value{0};
};
struct GaugeCell {
  std::atomic<double> value{0};
};
struct HistogramCell {
  explicit HistogramCell(std::size_t buckets) : counts(buckets + 1) {}
  std::vector<std::atomic<std::uint64_t>> counts;  // per bucket, last one is +Inf
  std::atomic<double> sum{0};
};

// Handles: cheap to copy, valid while the Registry lives. A default-constructed handle
// ignores updates (so optional instrumentation needs no branches at call sites).
class Counter {
 public:
  Counter() = default;
  explicit Counter(CounterCell* cell) : cell_(cell) {}
  void Inc(std::uint64_t n = 1) const {
    if (cell_) cell_->value.fetch_add(n, std::memory_order_relaxed);
  }
  std::uint64_t Value() const { return cell_ ? cell_->value.load(std::memory_order_relaxed) : 0; }

 private:
  CounterCell* cell_ = nullptr;
};

class Gauge {
 public:
  Gauge() = default;
  explicit Gauge(GaugeCell* cell) : cell_(cell) {}
  void Set(double v) const {
    if (cell_) cell_->value.store(v, std::memory_order_relaxed);
  }
  void Add(double delta) const;
  void Inc() const { Add(1); }
  void Dec() const { Add(-1); }
  double Value() const { return cell_ ? cell_->value.load(std::memory_order_relaxed) : 0; }

 private:
  GaugeCell* cell_ = nullptr;
};

class Histogram {
 public:
  Histogram() = default;
  Histogram(HistogramCell* cell, const std::vector<double>* bounds)
      : cell_(cell), bounds_(bounds) {}
  void Observe(double value) const;
  // Number of observations and their sum (for tests and summaries).
  std::uint64_t Count() const;
  double Sum() const;

 private:
  HistogramCell* cell_ = nullptr;
  const std::vector<double>* bounds_ = nullptr;
};

enum class Type { kCounter, kGauge, kHistogram };

// One metric name with its label names and series.
class Family {
 public:
  Family(Type type, std::string name, std::string help, std::vector<std::string> label_names,
         std::vector<double> buckets, std::size_t max_label_sets);
  Type type() const { return type_; }
  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  const std::vector<std::string>& label_names() const { return label_names_; }
  const std::vector<double>& buckets() const { return buckets_; }
  // Distinct label sets currently held (the "other" set included) and how many lookups were
  // folded into "other" because of the cap.
  std::size_t series_count() const;
  std::uint64_t folded() const { return folded_.load(std::memory_order_relaxed); }

  // Appends this family in the text format.
  void Expose(std::string& out) const;

 protected:
  struct Series {
    std::vector<std::string> values;
    std::unique_ptr<CounterCell> counter;
    std::unique_ptr<GaugeCell> gauge;
    std::unique_ptr<HistogramCell> histogram;
  };
  // Finds or creates the series for `values` (their count must match the label names, else
  // std::invalid_argument), folding into "other" past the cap.
  Series& Find(std::vector<std::string> values);

 private:
  Type type_;
  std::string name_;
  std::string help_;
  std::vector<std::string> label_names_;
  std::vector<double> buckets_;
  std::size_t max_label_sets_;
  mutable std::mutex mutex_;
  std::map<std::vector<std::string>, Series> series_;  // sorted: exposition order
  std::atomic<std::uint64_t> folded_{0};
};

class CounterFamily : public Family {
 public:
  using Family::Family;
  Counter With(std::initializer_list<std::string_view> values);
  Counter With(const std::vector<std::string>& values);
};

class GaugeFamily : public Family {
 public:
  using Family::Family;
  Gauge With(std::initializer_list<std::string_view> values);
  Gauge With(const std::vector<std::string>& values);
};

class HistogramFamily : public Family {
 public:
  using Family::Family;
  Histogram With(std::initializer_list<std::string_view> values);
  Histogram With(const std::vector<std::string>& values);
};

// Default histogram buckets for latencies in seconds (Prometheus client defaults).
std::vector<double> DefaultLatencyBuckets();
// `count` buckets starting at `start`, each `factor` times the previous.
std::vector<double> ExponentialBuckets(double start, double factor, std::size_t count);

struct RegistryOptions {
  std::size_t max_label_sets = 1000;  // per family
};

class Registry {
 public:
  explicit Registry(RegistryOptions options = {});
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Registers a family or returns the existing one of that name. Re-registering a name with a
  // different type or label names throws std::invalid_argument, as do invalid metric or label
  // names ([a-zA-Z_:][a-zA-Z0-9_:]*, labels [a-zA-Z_][a-zA-Z0-9_]*, not "le", not "__*").
  // `max_label_sets` 0 means the registry's default.
  CounterFamily& AddCounter(const std::string& name, const std::string& help,
                            std::vector<std::string> label_names = {},
                            std::size_t max_label_sets = 0);
  GaugeFamily& AddGauge(const std::string& name, const std::string& help,
                        std::vector<std::string> label_names = {}, std::size_t max_label_sets = 0);
  // Bucket upper bounds must be strictly increasing and finite; +Inf is implied.
  HistogramFamily& AddHistogram(const std::string& name, const std::string& help,
                                std::vector<std::string> label_names = {},
                                std::vector<double> buckets = DefaultLatencyBuckets(),
                                std::size_t max_label_sets = 0);

  // The Prometheus text exposition (version 0.0.4) of every family, sorted by name.
  std::string Expose() const;
  static constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";

 private:
  Family& Add(Type type, const std::string& name, const std::string& help,
              std::vector<std::string> label_names, std::vector<double> buckets,
              std::size_t max_label_sets);
  RegistryOptions options_;
  mutable std::mutex mutex_;
  std::map<std::string, std::unique_ptr<Family>> families_;
};

// Text-format escaping: HELP escapes \ and newline; label values also escape ".
std::string EscapeHelp(std::string_view text);
std::string EscapeLabelValue(std::string_view text);
// A sample value as Prometheus writes it: integers without a fraction, +Inf, -Inf, NaN.
std::string FormatValue(double value);

}  // namespace tunnelkit::metrics
