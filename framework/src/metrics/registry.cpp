#include "tunnelkit/metrics/registry.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

namespace tunnelkit::metrics {

namespace {

bool ValidMetricName(std::string_view name) {
  if (name.empty()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

bool ValidLabelName(std::string_view name) {
  if (name.empty() || name.rfind("__", 0) == 0) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

void AtomicAdd(std::atomic<double>& target, double delta) {
  double current = target.load(std::memory_order_relaxed);
  while (!target.compare_exchange_weak(current, current + delta, std::memory_order_relaxed)) {
  }
}

void AppendLabels(std::string& out, const std::vector<std::string>& names,
                  const std::vector<std::string>& values, const char* extra_name = nullptr,
                  const std::string& extra_value = {}) {
  if (names.empty() && !extra_name) return;
  out += '{';
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i) out += ',';
    out += names[i];
    out += "=\"";
    out += EscapeLabelValue(values[i]);
    out += '"';
  }
  if (extra_name) {
    if (!names.empty()) out += ',';
    out += extra_name;
    out += "=\"";
    out += extra_value;
    out += '"';
  }
  out += '}';
}

std::vector<std::string> ToStrings(std::initializer_list<std::string_view> values) {
  return std::vector<std::string>(values.begin(), values.end());
}

// Backslash and newline escaped, and the double quote too when `quote` (label values).
std::string Escape(std::string_view text, bool quote) {
  std::string out;
  for (char c : text) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else if (c == '"' && quote)
      out += "\\\"";
    else
      out += c;
  }
  return out;
}

}  // namespace

std::string EscapeHelp(std::string_view text) {
  return Escape(text, false);
}

std::string EscapeLabelValue(std::string_view text) {
  return Escape(text, true);
}

std::string FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (value == std::floor(value) && std::fabs(value) < 1e15) {
    return fmt::format("{}", static_cast<long long>(value));
  }
  return fmt::format("{}", value);
}

void Gauge::Add(double delta) const {
  if (cell_) AtomicAdd(cell_->value, delta);
}

void Histogram::Observe(double value) const {
  if (!cell_) return;
  // Bucket i counts values <= bounds[i]; the last cell is +Inf. Cumulated at exposure.
  const auto it = std::lower_bound(bounds_->begin(), bounds_->end(), value);
  const auto index = static_cast<std::size_t>(it - bounds_->begin());
  cell_->counts[index].fetch_add(1, std::memory_order_relaxed);
  AtomicAdd(cell_->sum, value);
}

std::uint64_t Histogram::Count() const {
  if (!cell_) return 0;
  std::uint64_t total = 0;
  for (const auto& c : cell_->counts) total += c.load(std::memory_order_relaxed);
  return total;
}

double Histogram::Sum() const {
  return cell_ ? cell_->sum.load(std::memory_order_relaxed) : 0;
}

std::vector<double> DefaultLatencyBuckets() {
  return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

std::vector<double> ExponentialBuckets(double start, double factor, std::size_t count) {
  if (start <= 0 || factor <= 1)
    throw std::invalid_argument("exponential buckets need start > 0 and factor > 1");
  std::vector<double> out;
  double v = start;
  for (std::size_t i = 0; i < count; ++i, v *= factor) out.push_back(v);
  return out;
}

Family::Family(Type type, std::string name, std::string help, std::vector<std::string> label_names,
               std::vector<double> buckets, std::size_t max_label_sets)
    : type_(type),
      name_(std::move(name)),
      help_(std::move(help)),
      label_names_(std::move(label_names)),
      buckets_(std::move(buckets)),
      max_label_sets_(max_label_sets) {}

std::size_t Family::series_count() const {
  std::lock_guard lock(mutex_);
  return series_.size();
}

Family::Series& Family::Find(std::vector<std::string> values) {
  if (values.size() != label_names_.size()) {
    throw std::invalid_argument(fmt::format("metric {}: {} label values given, {} expected", name_,
                                            values.size(), label_names_.size()));
  }
  std::lock_guard lock(mutex_);
  if (auto it = series_.find(values); it != series_.end()) return it->second;
  if (series_.size() >= max_label_sets_) {
    folded_.fetch_add(1, std::memory_order_relaxed);
    std::fill(values.begin(), values.end(), kFoldedLabelValue);
    if (auto it = series_.find(values); it != series_.end()) return it->second;
  }
  Series series;
  series.values = values;
  switch (type_) {
    case Type::kCounter:
      series.counter = std::make_unique<CounterCell>();
      break;
    case Type::kGauge:
      series.gauge = std::make_unique<GaugeCell>();
      break;
    case Type::kHistogram:
      series.histogram = std::make_unique<HistogramCell>(buckets_.size());
      break;
  }
  return series_.emplace(std::move(values), std::move(series)).first->second;
}

void Family::Expose(std::string& out) const {
  out += "# HELP " + name_ + " " + EscapeHelp(help_) + "\n";
  out += "# TYPE " + name_ + " ";
  out += type_ == Type::kCounter ? "counter" : type_ == Type::kGauge ? "gauge" : "histogram";
  out += '\n';
  std::lock_guard lock(mutex_);
  for (const auto& [values, series] : series_) {
    if (type_ == Type::kCounter) {
      out += name_;
      AppendLabels(out, label_names_, values);
      out += ' ' + std::to_string(series.counter->value.load(std::memory_order_relaxed)) + '\n';
    } else if (type_ == Type::kGauge) {
      out += name_;
      AppendLabels(out, label_names_, values);
      out += ' ' + FormatValue(series.gauge->value.load(std::memory_order_relaxed)) + '\n';
    } else {
      std::uint64_t cumulative = 0;
      const auto& counts = series.histogram->counts;
      for (std::size_t i = 0; i < counts.size(); ++i) {
        cumulative += counts[i].load(std::memory_order_relaxed);
        out += name_ + "_bucket";
        AppendLabels(out, label_names_, values, "le",
                     i < buckets_.size() ? FormatValue(buckets_[i]) : "+Inf");
        out += ' ' + std::to_string(cumulative) + '\n';
      }
      out += name_ + "_sum";
      AppendLabels(out, label_names_, values);
      out += ' ' + FormatValue(series.histogram->sum.load(std::memory_order_relaxed)) + '\n';
      // _count equals the +Inf bucket, so a scrape is self-consistent.
      out += name_ + "_count";
      AppendLabels(out, label_names_, values);
      out += ' ' + std::to_string(cumulative) + '\n';
    }
  }
}

Counter CounterFamily::With(std::initializer_list<std::string_view> values) {
  return Counter(Find(ToStrings(values)).counter.get());
}
Counter CounterFamily::With(const std::vector<std::string>& values) {
  return Counter(Find(values).counter.get());
}
Gauge GaugeFamily::With(std::initializer_list<std::string_view> values) {
  return Gauge(Find(ToStrings(values)).gauge.get());
}
Gauge GaugeFamily::With(const std::vector<std::string>& values) {
  return Gauge(Find(values).gauge.get());
}
Histogram HistogramFamily::With(std::initializer_list<std::string_view> values) {
  return Histogram(Find(ToStrings(values)).histogram.get(), &buckets());
}
Histogram HistogramFamily::With(const std::vector<std::string>& values) {
  return Histogram(Find(values).histogram.get(), &buckets());
}

Registry::Registry(RegistryOptions options) : options_(options) {
  if (options_.max_label_sets == 0) options_.max_label_sets = 1;
}

Family& Registry::Add(Type type, const std::string& name, const std::string& help,
                      std::vector<std::string> label_names, std::vector<double> buckets,
                      std::size_t max_label_sets) {
  if (!ValidMetricName(name)) throw std::invalid_argument("invalid metric name '" + name + "'");
  for (const auto& label : label_names) {
    if (!ValidLabelName(label) || (type == Type::kHistogram && label == "le")) {
      throw std::invalid_argument("metric " + name + ": invalid label name '" + label + "'");
    }
  }
  for (std::size_t i = 0; i < buckets.size(); ++i) {
    if (!std::isfinite(buckets[i]) || (i > 0 && buckets[i] <= buckets[i - 1])) {
      throw std::invalid_argument("metric " + name +
                                  ": bucket bounds must be finite and increasing");
    }
  }
  std::lock_guard lock(mutex_);
  if (auto it = families_.find(name); it != families_.end()) {
    Family& existing = *it->second;
    if (existing.type() != type || existing.label_names() != label_names ||
        (type == Type::kHistogram && existing.buckets() != buckets)) {
      throw std::invalid_argument("metric " + name +
                                  " is already registered with another type, labels or buckets");
    }
    return existing;
  }
  const std::size_t cap = max_label_sets ? max_label_sets : options_.max_label_sets;
  std::unique_ptr<Family> family;
  switch (type) {
    case Type::kCounter:
      family = std::make_unique<CounterFamily>(type, name, help, std::move(label_names),
                                               std::vector<double>{}, cap);
      break;
    case Type::kGauge:
      family = std::make_unique<GaugeFamily>(type, name, help, std::move(label_names),
                                             std::vector<double>{}, cap);
      break;
    case Type::kHistogram:
      family = std::make_unique<HistogramFamily>(type, name, help, std::move(label_names),
                                                 std::move(buckets), cap);
      break;
  }
  return *families_.emplace(name, std::move(family)).first->second;
}

CounterFamily& Registry::AddCounter(const std::string& name, const std::string& help,
                                    std::vector<std::string> label_names,
                                    std::size_t max_label_sets) {
  return static_cast<CounterFamily&>(
      Add(Type::kCounter, name, help, std::move(label_names), {}, max_label_sets));
}

GaugeFamily& Registry::AddGauge(const std::string& name, const std::string& help,
                                std::vector<std::string> label_names, std::size_t max_label_sets) {
  return static_cast<GaugeFamily&>(
      Add(Type::kGauge, name, help, std::move(label_names), {}, max_label_sets));
}

HistogramFamily& Registry::AddHistogram(const std::string& name, const std::string& help,
                                        std::vector<std::string> label_names,
                                        std::vector<double> buckets, std::size_t max_label_sets) {
  return static_cast<HistogramFamily&>(Add(Type::kHistogram, name, help, std::move(label_names),
                                           std::move(buckets), max_label_sets));
}

std::string Registry::Expose() const {
  std::string out;
  std::lock_guard lock(mutex_);
  for (const auto& [name, family] : families_) family->Expose(out);
  return out;
}

}  // namespace tunnelkit::metrics
