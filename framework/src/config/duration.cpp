#include "tunnelkit/config/duration.hpp"

#include <cmath>
#include <cstdint>
#include <limits>

namespace tunnelkit::config {

namespace {

// Longest unit first so "ms" is not read as "m" followed by garbage.
struct Unit {
  std::string_view name;
  double nanos;
};
constexpr Unit kUnits[] = {{"ns", 1.0}, {"us", 1e3}, {"µs", 1e3},  {"ms", 1e6},
                           {"s", 1e9},  {"m", 60e9}, {"h", 3600e9}};

// A limit well inside int64 nanoseconds (~292 years) and inside Duration's range.
constexpr double kMaxNanos = 100.0 * 365 * 24 * 3600 * 1e9;

}  // namespace

Result<std::chrono::nanoseconds> ParseDuration(std::string_view text) {
  const std::string quoted = "\"" + std::string(text) + "\"";
  if (text.empty()) {
    return Error::Invalid("empty duration");
  }
  if (text == "0") return std::chrono::nanoseconds(0);
  if (text.front() == '-' || text.front() == '+') {
    return Error::Invalid("duration must not be signed: " + quoted);
  }
  double total = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    // number: digits with an optional fraction
    double whole = 0;
    bool digits = false;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      whole = whole * 10 + (text[pos] - '0');
      ++pos;
      digits = true;
    }
    double fraction = 0;
    if (pos < text.size() && text[pos] == '.') {
      ++pos;
      double scale = 0.1;
      while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
        fraction += (text[pos] - '0') * scale;
        scale /= 10;
        ++pos;
        digits = true;
      }
    }
    if (!digits) {
      return Error::Invalid("invalid duration " + quoted + " (expected e.g. 500ms, 30s, 1h30m)");
    }
    const Unit* unit = nullptr;
    for (const auto& candidate : kUnits) {
      if (text.substr(pos, candidate.name.size()) == candidate.name &&
          (!unit || candidate.name.size() > unit->name.size())) {
        unit = &candidate;
      }
    }
    if (!unit) {
      if (pos == text.size()) {
        return Error::Invalid("missing unit in duration " + quoted + " (ns, us, ms, s, m, h)");
      }
      return Error::Invalid("unknown unit \"" + std::string(text.substr(pos)) + "\" in duration " +
                            quoted + " (ns, us, ms, s, m, h)");
    }
    pos += unit->name.size();
    total += (whole + fraction) * unit->nanos;
    if (total > kMaxNanos) return Error::Invalid("duration too large: " + quoted);
  }
  return std::chrono::nanoseconds(static_cast<std::int64_t>(std::llround(total)));
}

std::optional<std::chrono::nanoseconds> SecondsToDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0 || seconds * 1e9 > kMaxNanos) return std::nullopt;
  return std::chrono::nanoseconds(static_cast<std::int64_t>(std::llround(seconds * 1e9)));
}

std::string FormatDuration(std::chrono::nanoseconds value) {
  std::int64_t ns = value.count();
  if (ns == 0) return "0s";
  std::string sign;
  if (ns < 0) {
    sign = "-";
    ns = -ns;
  }
  if (ns < 1'000'000'000) {
    // Below a second: the largest unit that divides evenly keeps the text exact.
    if (ns % 1'000'000 == 0) return sign + std::to_string(ns / 1'000'000) + "ms";
    if (ns % 1'000 == 0) return sign + std::to_string(ns / 1'000) + "us";
    return sign + std::to_string(ns) + "ns";
  }
  std::int64_t hours = ns / 3'600'000'000'000;
  ns %= 3'600'000'000'000;
  std::int64_t minutes = ns / 60'000'000'000;
  ns %= 60'000'000'000;
  std::int64_t seconds = ns / 1'000'000'000;
  std::int64_t frac = ns % 1'000'000'000;
  std::string out = sign;
  if (hours) out += std::to_string(hours) + "h";
  if (hours || minutes) out += std::to_string(minutes) + "m";
  if (seconds || frac || out.size() == sign.size()) {
    out += std::to_string(seconds);
    if (frac) {
      std::string digits = std::to_string(frac);
      digits.insert(0, 9 - digits.size(), '0');
      while (!digits.empty() && digits.back() == '0') digits.pop_back();
      out += "." + digits;
    }
    out += "s";
  }
  return out;
}

google::protobuf::Duration ToProto(std::chrono::nanoseconds value) {
  google::protobuf::Duration d;
  d.set_seconds(value.count() / 1'000'000'000);
  d.set_nanos(static_cast<std::int32_t>(value.count() % 1'000'000'000));
  return d;
}

std::chrono::nanoseconds FromProto(const google::protobuf::Duration& value) {
  return std::chrono::seconds(value.seconds()) + std::chrono::nanoseconds(value.nanos());
}

std::chrono::nanoseconds DurationOr(bool has, const google::protobuf::Duration& value,
                                    std::chrono::nanoseconds fallback) {
  return has ? FromProto(value) : fallback;
}

}  // namespace tunnelkit::config
