#include "tunnelkit/logging.hpp"

#include <chrono>
#include <ctime>
#include <mutex>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace tunnelkit::logging {

namespace {

std::string_view LevelName(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace:
      return "trace";
    case spdlog::level::debug:
      return "debug";
    case spdlog::level::info:
      return "info";
    case spdlog::level::warn:
      return "warn";
    case spdlog::level::err:
      return "error";
    case spdlog::level::critical:
      return "critical";
    default:
      return "off";
  }
}

// RFC 3339 UTC with milliseconds: 2026-11-28T14:03:07.123Z
void AppendTime(spdlog::log_clock::time_point time, std::string& out) {
  const auto since = time.time_since_epoch();
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(since);
  const auto millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(since - seconds).count();
  std::time_t t = static_cast<std::time_t>(seconds.count());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(millis));
  out += buf;
}

class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    std::string line = "{\"time\":\"";
    AppendTime(msg.time, line);
    line += "\",\"level\":\"";
    line += LevelName(msg.level);
    line += "\",\"logger\":";
    line += JsonString(std::string_view(msg.logger_name.data(), msg.logger_name.size()));
    line += ",\"msg\":";
    line += JsonString(std::string_view(msg.payload.data(), msg.payload.size()));
    line += "}\n";
    dest.append(line.data(), line.data() + line.size());
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

struct Shared {
  std::mutex mutex;
  Options options;
  spdlog::sink_ptr sink;
};

Shared& State() {
  static Shared* shared = [] {
    auto* s = new Shared;  // never destroyed: loggers may log during static destruction
    s->sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    s->sink->set_formatter(MakeFormatter(Format::kText));
    return s;
  }();
  return *shared;
}

}  // namespace

std::optional<spdlog::level::level_enum> ParseLevel(std::string_view text) {
  if (text == "trace") return spdlog::level::trace;
  if (text == "debug") return spdlog::level::debug;
  if (text == "info") return spdlog::level::info;
  if (text == "warn" || text == "warning") return spdlog::level::warn;
  if (text == "error") return spdlog::level::err;
  if (text == "off") return spdlog::level::off;
  return std::nullopt;
}

std::optional<Format> ParseFormat(std::string_view text) {
  if (text == "text") return Format::kText;
  if (text == "json") return Format::kJson;
  return std::nullopt;
}

std::unique_ptr<spdlog::formatter> MakeFormatter(Format format) {
  if (format == Format::kJson) return std::make_unique<JsonFormatter>();
  return std::make_unique<spdlog::pattern_formatter>("%Y-%m-%dT%H:%M:%S.%eZ %^%-5!l%$ [%n] %v",
                                                     spdlog::pattern_time_type::utc);
}

void Configure(const Options& options) {
  auto& state = State();
  std::lock_guard lock(state.mutex);
  state.options = options;
  state.sink->set_formatter(MakeFormatter(options.format));
}

const Options& CurrentOptions() {
  return State().options;
}

std::shared_ptr<spdlog::logger> MakeLogger(const std::string& name) {
  auto& state = State();
  std::lock_guard lock(state.mutex);
  auto logger = std::make_shared<spdlog::logger>(name, state.sink);
  logger->set_level(state.options.level);
  // Errors reach stderr at once even when the process dies right after.
  logger->flush_on(spdlog::level::warn);
  return logger;
}

std::shared_ptr<spdlog::logger> MakeLogger(const std::string& name, spdlog::sink_ptr sink,
                                           const Options& options) {
  sink->set_formatter(MakeFormatter(options.format));
  auto logger = std::make_shared<spdlog::logger>(name, std::move(sink));
  logger->set_level(options.level);
  logger->flush_on(spdlog::level::trace);
  return logger;
}

}  // namespace tunnelkit::logging
