// Logging: level and format parsing, JSON lines that parse back with every character intact,
// text lines with the logger name, and the Runtime's per-tunnel loggers.
#include "tunnelkit/logging.hpp"

#include <gtest/gtest.h>

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tunnelkit/runtime.hpp"

namespace tunnelkit::logging {
namespace {

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

TEST(Logging, ParsesLevelsAndFormats) {
  EXPECT_EQ(ParseLevel("trace"), spdlog::level::trace);
  EXPECT_EQ(ParseLevel("debug"), spdlog::level::debug);
  EXPECT_EQ(ParseLevel("info"), spdlog::level::info);
  EXPECT_EQ(ParseLevel("warn"), spdlog::level::warn);
  EXPECT_EQ(ParseLevel("error"), spdlog::level::err);
  EXPECT_EQ(ParseLevel("off"), spdlog::level::off);
  EXPECT_FALSE(ParseLevel("loud"));
  EXPECT_FALSE(ParseLevel("INFO"));
  EXPECT_EQ(ParseFormat("json"), Format::kJson);
  EXPECT_EQ(ParseFormat("text"), Format::kText);
  EXPECT_FALSE(ParseFormat("xml"));
}

TEST(Logging, JsonLinesCarryTimeLevelLoggerAndEscapedMessage) {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
  auto logger = MakeLogger("app", sink, Options{spdlog::level::debug, Format::kJson});
  const std::string tricky =
      "quote\" backslash\\ newline\n tab\t bell\x07 utf8 \xc3\xa9 bad \xff end";
  logger->info("{}", tricky);
  logger->warn("second");
  logger->trace("filtered out");
  auto lines = Lines(out.str());
  ASSERT_EQ(lines.size(), 2u) << out.str();
  auto first = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(first["level"], "info");
  EXPECT_EQ(first["logger"], "app");
  EXPECT_EQ(first["msg"],
            "quote\" backslash\\ newline\n tab\t bell\x07 utf8 \xc3\xa9 bad \xef\xbf\xbd end");
  const std::string time = first["time"];
  ASSERT_EQ(time.size(), 24u) << time;  // 2026-11-28T14:03:07.123Z
  EXPECT_EQ(time[10], 'T');
  EXPECT_EQ(time.back(), 'Z');
  EXPECT_EQ(nlohmann::json::parse(lines[1])["level"], "warn");
  EXPECT_EQ(first.size(), 4u);
}

TEST(Logging, JsonEscapingOfControlCharacters) {
  EXPECT_EQ(JsonString("a\"b\\c\x01\x1f\x7f"), "\"a\\\"b\\\\c\\u0001\\u001f\\u007f\"");
  EXPECT_EQ(JsonString("\xe2\x82\xac"), "\"\xe2\x82\xac\"");           // valid 3-byte UTF-8 kept
  EXPECT_EQ(JsonString("\xed\xa0\x80"), "\"\\ufffd\\ufffd\\ufffd\"");  // surrogate refused
  EXPECT_EQ(JsonString("\xc0\xaf"), "\"\\ufffd\\ufffd\"");             // overlong refused
}

TEST(Logging, TextLinesNameTheLoggerAndLevel) {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
  auto logger = MakeLogger("edge-1", sink, Options{spdlog::level::warn, Format::kText});
  logger->info("hidden");
  logger->error("connection {} lost", 3);
  auto lines = Lines(out.str());
  ASSERT_EQ(lines.size(), 1u) << out.str();
  EXPECT_NE(lines[0].find("error [edge-1] connection 3 lost"), std::string::npos) << lines[0];
  EXPECT_EQ(lines[0][10], 'T');
}

TEST(Logging, RuntimeLoggersAreNamedByTunnelIdAndPart) {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
  config::v1::Tunnel config;
  config.set_id("app");
  config.set_backend("ferro");
  Runtime runtime(config, MakeLogger("app", sink, Options{spdlog::level::info, Format::kJson}));
  EXPECT_EQ(runtime.logger()->name(), "app");
  auto child = runtime.MakeLogger("session");
  EXPECT_EQ(child->name(), "app/session");
  child->info("up");
  auto lines = Lines(out.str());
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(nlohmann::json::parse(lines[0])["logger"], "app/session");
}

TEST(Logging, ConfiguredDefaultsApplyToNewLoggers) {
  Configure(Options{spdlog::level::err, Format::kJson});
  auto logger = MakeLogger("configured");
  EXPECT_EQ(logger->level(), spdlog::level::err);
  EXPECT_EQ(CurrentOptions().format, Format::kJson);
  Configure(Options{});
  EXPECT_EQ(MakeLogger("again")->level(), spdlog::level::info);
}

}  // namespace
}  // namespace tunnelkit::logging
