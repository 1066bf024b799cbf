// The text renderings of `mend demo`: the end-of-run report (demo_report.h) and the live view
// (demo_view.h).
#include "demo_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "demo_view.h"
#include "json_fields.h"
#include "mend/core/text.h"

namespace mend::app {
namespace {

using json = nlohmann::json;

// The order outcomes are listed in, best first.
constexpr const char* kStatuses[] = {
    "succeeded", "succeeded_after_retry", "fallback", "degraded", "failed", "error"};

struct Style {
  bool color;
  std::string paint(const std::string& text, const char* code) const {
    return color ? std::string("\x1b[") + code + "m" + text + "\x1b[0m" : text;
  }
  std::string bold(const std::string& t) const { return paint(t, "1"); }
  std::string dim(const std::string& t) const { return paint(t, "2"); }
  std::string green(const std::string& t) const { return paint(t, "32"); }
  std::string yellow(const std::string& t) const { return paint(t, "33"); }
  std::string red(const std::string& t) const { return paint(t, "31"); }
  std::string cyan(const std::string& t) const { return paint(t, "36"); }

  std::string status(const std::string& s) const {
    if (s == "succeeded" || s == "succeeded_after_retry") return green(s);
    if (s == "fallback" || s == "degraded") return yellow(s);
    return red(s);
  }
  std::string circuit(const std::string& s) const {
    if (s == "closed") return green(s);
    if (s == "half_open") return yellow(s);
    return red(s);
  }
  std::string health(const std::string& s) const {
    if (s == "healthy") return green(s);
    if (s == "unknown") return dim(s);
    return red(s);
  }
};

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string percent(double part, double whole) {
  return whole > 0 ? fixed(100.0 * part / whole, 1) + " %" : "-";
}

// Pads (or cuts) to `width` visible characters; `painted` is `text` with ANSI codes around it.
std::string pad(const std::string& text, std::size_t width, const std::string& painted = "") {
  std::string shown = text.size() > width ? text.substr(0, width - 1) + "~" : text;
  std::string out = painted.empty() || shown != text ? shown : painted;
  if (shown.size() < width) out += std::string(width - shown.size(), ' ');
  return out;
}

// The first `width` visible characters of `line` (ANSI colour sequences do not count), so that
// a narrow terminal does not wrap the frame and break its redraw.
std::string cut_visible(const std::string& line, int width, bool color) {
  std::string out;
  int visible = 0;
  for (std::size_t i = 0; i < line.size(); ++i) {
    if (line[i] == '\x1b') {
      const std::size_t end = line.find('m', i);
      if (end == std::string::npos) break;
      out.append(line, i, end - i + 1);
      i = end;
      continue;
    }
    if (visible >= width) break;
    out += line[i];
    ++visible;
  }
  if (color) out += "\x1b[0m";
  return out;
}

double quantile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double pos = q * static_cast<double>(values.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(pos));
  const std::size_t hi = std::min(lo + 1, values.size() - 1);
  return values[lo] + (values[hi] - values[lo]) * (pos - static_cast<double>(lo));
}

// "label ....... text": the report's left column.
std::string row(const Style& s, const std::string& label, const std::string& text) {
  return s.bold(pad(label, 15)) + text + "\n";
}

}  // namespace

std::string render_demo_text_report(const json& report, bool color) {
  const Style s{color};
  std::ostringstream out;
  const json& tasks = json_array(report, "tasks");
  const json totals = report.is_object() && report.contains("totals") ? report["totals"] : json();
  const double n = static_cast<double>(tasks.size());

  out << "\n"
      << s.bold("mend demo: the report") << "  " << s.dim(json_text(report, "started_at", ""))
      << ", " << fixed(json_number(report, "duration_s"), 0) << " s, " << tasks.size() << " tasks\n"
      << std::string(72, '-') << "\n";

  // Outcomes, best first, then anything unexpected.
  std::map<std::string, int> by_status;
  std::vector<double> latencies;
  for (const json& t : tasks) {
    ++by_status[json_text(t, "status", "error")];
    latencies.push_back(json_number(t, "latency_s"));
  }
  std::string outcomes;
  for (const char* status : kStatuses) {
    // Every status but "error" (the task API itself failed) is listed, zeros included: "failed
    // 0" is news.
    auto it = by_status.find(status);
    const int count = it == by_status.end() ? 0 : it->second;
    if (count > 0 || std::string(status) != "error") {
      outcomes += s.status(status) + " " + std::to_string(count) +
                  (count > 0 ? " (" + percent(count, n) + ")" : "") + "  ";
    }
  }
  for (const auto& [status, count] : by_status) {
    if (std::find(std::begin(kStatuses), std::end(kStatuses), status) == std::end(kStatuses)) {
      outcomes += s.red(status) + " " + std::to_string(count) + "  ";
    }
  }
  out << row(s, "Outcomes", tasks.empty() ? "no tasks" : outcomes);
  const int answered = by_status["succeeded"] + by_status["succeeded_after_retry"] +
                       by_status["fallback"] + by_status["degraded"];
  out << row(s, "Answered",
             percent(answered, n) +
                 " of tasks got an answer: " + percent(answered - by_status["degraded"], n) +
                 " from an agent, " + percent(by_status["degraded"], n) + " degraded");
  out << row(s, "Latency",
             "p50 " + seconds_text(quantile(latencies, 0.5)) + "   p95 " +
                 seconds_text(quantile(latencies, 0.95)) + "   p99 " +
                 seconds_text(quantile(latencies, 0.99)) + "   max " +
                 seconds_text(quantile(latencies, 1.0)));
  out << row(s, "Retries",
             fixed(json_number(totals, "retries"), 0) + " retries over " +
                 fixed(json_number(totals, "attempts"), 0) + " attempts (mend_retries_total " +
                 fixed(json_number(totals, "mend_retries"), 0) + ")");

  std::map<std::string, int> fallback_by;
  for (const json& t : tasks) {
    if (json_text(t, "status", "") == "fallback") ++fallback_by[json_text(t, "answered_by", "?")];
  }
  std::string fallbacks =
      std::to_string(by_status["fallback"]) + " tasks answered by another agent";
  if (!fallback_by.empty()) {
    fallbacks += ":";
    for (const auto& [agent, count] : fallback_by) {
      fallbacks += " " + agent + " " + std::to_string(count);
    }
  }
  out << row(s, "Fallbacks", fallbacks);
  out << row(s, "Degraded",
             std::to_string(by_status["degraded"]) +
                 " tasks answered by the degraded service (basic checks, manual steps)");

  const json& transitions = json_array(report, "circuit_transitions");
  out << row(s, "Circuits", std::to_string(transitions.size()) + " transitions");
  for (const json& t : transitions) {
    out << "               " << s.dim(pad(fixed(json_number(t, "t"), 1) + " s", 7)) << " "
        << pad(json_text(t, "agent", ""), 32) << json_text(t, "from", "") << " -> "
        << s.circuit(json_text(t, "to", "")) << "\n";
  }
  const json& restarts = json_array(report, "restarts");
  out << row(s, "Restarts", std::to_string(restarts.size()) + " agent restarts");
  for (const json& r : restarts) {
    out << "               " << s.dim(pad(fixed(json_number(r, "t"), 1) + " s", 7)) << " "
        << pad(json_text(r, "agent", ""), 32) << json_text(r, "reason", "") << "\n";
  }
  const json& healing = json_array(report, "healing");
  out << row(s, "Self-healing", std::to_string(healing.size()) + " recoveries");
  for (const json& h : healing) {
    out << "               " << s.dim(pad(fixed(json_number(h, "t"), 1) + " s", 7)) << " "
        << pad(json_text(h, "agent", ""), 32) << json_text(h, "detail", "") << "\n";
  }

  const json& records = json_array(report, "records");
  int incidents = 0;
  for (const json& r : records) incidents += json_text(r, "kind", "") == "incident" ? 1 : 0;
  out << row(s, "Escalations",
             std::to_string(incidents) + " incidents, " +
                 std::to_string(records.size() - static_cast<std::size_t>(incidents)) + " tickets");
  for (const json& r : records) {
    const std::string level = json_text(r, "level", "");
    const std::string painted = level == "critical" ? s.red(level)
                                : level == "high"   ? s.yellow(level)
                                                    : level;
    out << "               " << pad(json_text(r, "id", ""), 7) << pad(level, 9, painted)
        << pad(json_text(r, "status", ""), 13) << "SLA due "
        << pad(json_text(r, "sla_due", "-"), 26) << "x" << pad(json_text(r, "occurrences", "1"), 4)
        << json_text(r, "title", "") << "\n";
    if (std::string room = json_text(r, "war_room_url", ""); !room.empty()) {
      out << "               " << s.dim("war room: " + room) << "\n";
    }
  }
  out << row(s, "Notifications",
             fixed(json_number(totals, "notifications_sent"), 0) + " delivered by mend, " +
                 fixed(json_number(totals, "notifications_received"), 0) +
                 " received by the demo's webhook");

  const json& chaos = json_array(report, "chaos");
  out << row(s, "Chaos", std::to_string(chaos.size()) + " injections");
  for (const json& c : chaos) {
    out << "               " << s.dim(pad(fixed(json_number(c, "t"), 1) + " s", 7)) << " "
        << pad(json_text(c, "agent", ""), 32) << json_text(c, "detail", "");
    if (std::string error = json_text(c, "error", ""); !error.empty())
      out << s.red("  (failed: " + error + ")");
    out << "\n";
  }
  out << std::string(72, '-') << "\n";
  return out.str();
}

std::string render_live_frame(const LiveView& v, int width, bool color) {
  const Style s{color};
  const std::string eol = "\n";
  std::ostringstream out;
  const double fraction = v.duration_s > 0 ? std::clamp(v.elapsed_s / v.duration_s, 0.0, 1.0) : 0;
  const int bar = std::clamp(width - 60, 10, 40);
  const int filled = static_cast<int>(fraction * bar);
  out << s.bold("mend demo") << "  [" << s.cyan(std::string(static_cast<std::size_t>(filled), '#'))
      << std::string(static_cast<std::size_t>(bar - filled), '.') << "] "
      << fixed(fraction * 100, 0) << " %  " << fixed(v.elapsed_s, 0) << " s / "
      << fixed(v.duration_s, 0) << " s  " << s.dim(v.base_url) << eol;
  out << s.dim(pad("agent", 32) + pad("health", 11) + pad("circuit", 11) + pad("in flight", 11) +
               pad("ready", 7) + "restarts")
      << eol;
  for (const AgentRow& a : v.agents) {
    out << pad(a.name, 32) << pad(a.health, 11, s.health(a.health))
        << pad(a.circuit, 11, s.circuit(a.circuit))
        << pad(std::to_string(a.in_flight) + "/" + std::to_string(a.max_concurrent), 11)
        << pad(std::to_string(a.ready) + "/" + std::to_string(a.replicas), 7) << a.restarts << eol;
  }
  auto count = [&](const char* status) {
    auto it = v.outcomes.find(status);
    return it == v.outcomes.end() ? 0 : it->second;
  };
  out << "tasks " << v.done << "/" << v.submitted << ": " << s.green("ok") << " "
      << count("succeeded") << "  " << s.green("after retry") << " "
      << count("succeeded_after_retry") << "  " << s.yellow("fallback") << " " << count("fallback")
      << "  " << s.yellow("degraded") << " " << count("degraded") << "  " << s.red("failed") << " "
      << count("failed") + count("error") << eol;
  out << "retries " << v.retries << "  circuit transitions " << v.circuit_transitions
      << "  restarts " << v.restarts << "  self-healing " << v.self_healing << "  escalated "
      << v.escalations << "  notifications " << v.notifications << eol;
  for (const std::string& line : v.recent) out << s.dim(line) << eol;
  // Every line within the width, and cleared to its end (over the previous frame).
  std::string frame;
  std::istringstream lines(out.str());
  for (std::string line; std::getline(lines, line);) {
    frame += cut_visible(line, std::max(width - 1, 20), color) + "\x1b[K\n";
  }
  return frame;
}

std::string render_progress_line(const LiveView& v) {
  auto count = [&](const char* status) {
    auto it = v.outcomes.find(status);
    return it == v.outcomes.end() ? 0 : it->second;
  };
  std::string open;
  for (const AgentRow& a : v.agents) {
    if (a.circuit != "closed") open += (open.empty() ? "" : ", ") + a.name + " " + a.circuit;
  }
  char head[64];
  std::snprintf(head, sizeof head, "[%5.1f s of %.0f] ", v.elapsed_s, v.duration_s);
  return std::string(head) + "tasks " + std::to_string(v.done) + "/" + std::to_string(v.submitted) +
         ": succeeded " + std::to_string(count("succeeded")) + ", after retry " +
         std::to_string(count("succeeded_after_retry")) + ", fallback " +
         std::to_string(count("fallback")) + ", degraded " + std::to_string(count("degraded")) +
         ", failed " + std::to_string(count("failed") + count("error")) + "; retries " +
         std::to_string(v.retries) + "; circuits not closed: " + (open.empty() ? "none" : open);
}

}  // namespace mend::app
