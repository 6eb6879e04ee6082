// Durations as people write them: "500ms", "30s", "5m", "1h", "1h30m", "1.5s", "250us",
// "100ns" (Go's time.ParseDuration syntax, without signs), and as Duration messages.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include <google/protobuf/duration.pb.h>

#include "tunnelkit/result.hpp"

namespace tunnelkit::config {

// Nanoseconds, or why not ("missing unit in duration \"30\" (ns, us, ms, s, m, h)").
Result<std::chrono::nanoseconds> ParseDuration(std::string_view text);
// Seconds as a number (JSON's 1.5) to nanoseconds; nullopt if negative or too large.
std::optional<std::chrono::nanoseconds> SecondsToDuration(double seconds);

// The shortest text ParseDuration reads back: "0s", "500ms", "1m30s", "1h0m5s" (Go style).
std::string FormatDuration(std::chrono::nanoseconds value);

google::protobuf::Duration ToProto(std::chrono::nanoseconds value);
std::chrono::nanoseconds FromProto(const google::protobuf::Duration& value);
// `value` when the message has it set, else `fallback`.
std::chrono::nanoseconds DurationOr(bool has, const google::protobuf::Duration& value,
                                    std::chrono::nanoseconds fallback);

}  // namespace tunnelkit::config
