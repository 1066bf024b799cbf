// `mend events`: follows the daemon's event stream, one line (or one JSON object) per event.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <iterator>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "json_fields.h"
#include "mend/core/text.h"
#include "mend/runtime/agent_client.h"
#include "operator_commands.h"
#include "table.h"

namespace mend::app {
namespace {

using nlohmann::json;
using WallClock = std::chrono::system_clock;

// "18:40:01.002" from mend's "2026-11-28T18:40:01.002Z"; the time now (UTC) when absent.
std::string event_time(const json& event) {
  std::string at = json_text(event, "at", "");
  if (at.size() >= 23 && at[10] == 'T') return at.substr(11, 12);
  const auto now = WallClock::now();
  const std::time_t t = WallClock::to_time_t(now);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  const auto millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%02d:%02d:%02d.%03d", tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(millis));
  return buffer;
}

// `text` padded with spaces to `width` columns.
std::string padded(std::string text, std::size_t width) {
  const std::size_t now = display_width(text);
  if (now < width) text.append(width - now, ' ');
  return text;
}

// One line: time, kind, source, then the event's other fields as key=value, its detail last:
// "18:40:01.002  retry_scheduled     reviewer      task=task-7 attempt=0 ... delay=57ms  busy".
std::string event_line(const std::string& name, const json& event) {
  static const char* const kFirst[] = {"task_id",       "attempt", "error_type", "severity",
                                       "delay_seconds", "from",    "to",         "event",
                                       "process",       "pid",     "record"};
  static const char* const kSkip[] = {"kind", "at", "source", "detail"};
  std::string fields;
  auto append = [&](const std::string& key, const json& value) {
    if (!fields.empty()) fields += ' ';
    if (key == "delay_seconds" && value.is_number()) {
      std::string delay = seconds_text(value.get<double>());
      delay.erase(std::remove(delay.begin(), delay.end(), ' '), delay.end());
      fields += "delay=" + delay;
      return;
    }
    const std::string text = value.is_string()
                                 ? value.get<std::string>()
                                 : value.dump(-1, ' ', false, json::error_handler_t::replace);
    fields += (key == "task_id" ? std::string("task") : key) + "=" + truncate_to_width(text, 80);
  };
  if (event.is_object()) {
    for (const char* key : kFirst) {
      if (event.contains(key)) append(key, event[key]);
    }
    for (const auto& [key, value] : event.items()) {
      if (std::find(std::begin(kFirst), std::end(kFirst), key) != std::end(kFirst) ||
          std::find(std::begin(kSkip), std::end(kSkip), key) != std::end(kSkip)) {
        continue;
      }
      append(key, value);
    }
  }
  std::string line = event_time(event) + "  " + padded(name, 18) + "  " +
                     padded(json_text(event, "source", json_text(event, "agent", "-")), 12);
  if (!fields.empty()) line += "  " + fields;
  if (const std::string detail = json_text(event, "detail", ""); !detail.empty()) {
    line += "  " + detail;
  }
  line = printable(line);
  while (!line.empty() && line.back() == ' ') line.pop_back();
  return line;
}

}  // namespace

int run_events(const EventsOptions& o, const Connection& c, std::ostream& out, std::ostream& err) {
  Session s("events", c, out, err);
  std::string path = "/v1/events";
  if (o.replay > 0) path += "?replay=" + std::to_string(o.replay);
  std::optional<std::chrono::milliseconds> limit;
  if (o.for_seconds > 0) {
    limit =
        std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(o.for_seconds * 1000)));
  }
  int printed = 0;
  const auto started = std::chrono::steady_clock::now();
  Result<void> followed = s.api().follow_events(
      path,
      [&](const ServerEvent& event) {
        if (!o.kinds.empty() &&
            std::find(o.kinds.begin(), o.kinds.end(), event.name) == o.kinds.end()) {
          return true;
        }
        if (c.json) {
          out << event.data << "\n";
        } else {
          const json data = json_nesting_within(event.data)
                                ? json::parse(event.data, nullptr, false)
                                : json(json::value_t::discarded);
          static const json kEmpty = json::object();
          out << event_line(event.name, data.is_discarded() ? kEmpty : data) << "\n";
        }
        out.flush();
        ++printed;
        return o.count == 0 || printed < o.count;
      },
      limit);
  if (!followed.ok()) return s.fail_for(followed.error());
  if (o.count > 0 && printed >= o.count) return exit_status::kOk;
  const bool time_is_up =
      limit && std::chrono::steady_clock::now() - started >= *limit - std::chrono::milliseconds(5);
  if (time_is_up) return exit_status::kOk;
  // mend ended the stream (it is stopping).
  if (o.count > 0) {
    return s.fail("the event stream ended after " + std::to_string(printed) + " of " +
                  std::to_string(o.count) + " events (is mend stopping?)");
  }
  err << "mend events: the event stream ended (is mend stopping?)\n";
  return exit_status::kOk;
}

}  // namespace mend::app
