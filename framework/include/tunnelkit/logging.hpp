// Logging: spdlog loggers writing to stderr, as text for people or JSON for machines.
//
// One logger per tunnel, named by its id (Runtime::logger()), and children "<id>/<part>"
// (Runtime::MakeLogger). All loggers share one stderr sink, so lines never interleave.
//   text: 2026-11-28T14:03:07.123Z INFO  [app] registered connection 0
//   json: {"time":"2026-11-28T14:03:07.123Z","level":"info","logger":"app","msg":"..."}
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <spdlog/common.h>
#include <spdlog/formatter.h>

namespace spdlog {
class logger;
}

namespace tunnelkit::logging {

enum class Format { kText, kJson };

struct Options {
  spdlog::level::level_enum level = spdlog::level::info;
  Format format = Format::kText;
};

// "trace|debug|info|warn|error|off" (also "warning"); nullopt for anything else.
std::optional<spdlog::level::level_enum> ParseLevel(std::string_view text);
// "text|json"; nullopt for anything else.
std::optional<Format> ParseFormat(std::string_view text);

// Sets the process-wide level and format used by MakeLogger (tunnelctl calls it once, from
// the configuration, before any logger is made). The format applies at once to every logger
// on the shared stderr sink; the level applies to loggers made afterwards.
void Configure(const Options& options);
const Options& CurrentOptions();

// A logger named `name` writing to the shared stderr sink with the configured level/format.
std::shared_ptr<spdlog::logger> MakeLogger(const std::string& name);
// A logger on a caller's sink (tests capture output with an ostream_sink).
std::shared_ptr<spdlog::logger> MakeLogger(const std::string& name, spdlog::sink_ptr sink,
                                           const Options& options);

// The formatter for a format (JSON: one object per line with time, level, logger, msg).
std::unique_ptr<spdlog::formatter> MakeFormatter(Format format);

// Appends `text` as the inside of a JSON string: quotes, backslashes and control characters
// escaped, invalid UTF-8 replaced by U+FFFD.
void AppendJsonEscaped(std::string_view text, std::string& out);
std::string JsonString(std::string_view text);  // with the quotes

}  // namespace tunnelkit::logging
