// File: src/app/operator_format.h (internal to the `mend` binary)
//
// The text helpers the operator commands' human output shares: short durations and sizes,
// mend's timestamps, aligned "key  value" lines, indented blocks, and a path segment made safe
// for a URL.
//
//   short_duration(192)                        // "3m12s"
//   "/v1/agents/" + path_segment(name)         // "a b" -> "a%20b"
//   out << key_values({{"agent", "reviewer"}, {"health", "healthy"}});
//
// Thread-safety: pure functions.
#ifndef MEND_APP_OPERATOR_FORMAT_H_
#define MEND_APP_OPERATOR_FORMAT_H_

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mend::app {

// "0s", "45s", "3m12s", "2h05m", "3d04h".
std::string short_duration(double seconds);

// Every line of `text` indented by two spaces.
std::string indented(const std::string& text);

// "512 B", "1.5 KiB", "30.2 MiB".
std::string bytes_text(double bytes);

// mend's timestamps: "2026-11-28T18:40:00.120Z" (UTC).
std::optional<std::chrono::system_clock::time_point> parse_timestamp(std::string_view text);

double seconds_between(std::chrono::system_clock::time_point from,
                       std::chrono::system_clock::time_point to);

// Percent-encodes one path segment.
std::string path_segment(std::string_view text);

// "key   value" lines with the keys aligned.
std::string key_values(const std::vector<std::pair<std::string, std::string>>& rows);

}  // namespace mend::app

#endif  // MEND_APP_OPERATOR_FORMAT_H_
