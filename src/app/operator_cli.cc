#include "operator_cli.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <deque>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "api_client.h"
#include "json_fields.h"
#include "mend/agent_client.h"
#include "mend/config.h"
#include "mend/http_client.h"
#include "mend/text.h"
#include "table.h"

namespace mend::app {

const char* const kExitStatusHelp =
    "Exit status:\n"
    "  0  success\n"
    "  1  the command failed: mend answered an error (unknown agent or record, conflict),\n"
    "     or the configuration is invalid\n"
    "  2  wrong command line\n"
    "  3  the daemon could not be reached (or did not answer in time)\n"
    "  4  the daemon refused the token (401)\n"
    "  5  mend submit: the task's outcome is `failed`\n"
    "  6  mend submit: --wait ran out while the task was still running\n"
    "Environment: MEND_ADDRESS (default http://127.0.0.1:7070), MEND_API_TOKEN; a flag wins.\n"
    "Details: docs/cli.md\n";

namespace {

using nlohmann::json;
using WallClock = std::chrono::system_clock;

// --- Options ------------------------------------------------------------------------------------

// How to reach the daemon, and how to print. One per subcommand: CLI11 may fill the environment
// into every subcommand's options, so that a shared one could be overwritten.
struct Connection {
  std::string address = "http://127.0.0.1:7070";
  std::string token;
  bool json = false;
  double timeout_seconds = 10;

  std::chrono::milliseconds timeout(double extra_seconds = 0) const {
    return std::chrono::milliseconds(
        static_cast<std::int64_t>(std::llround((timeout_seconds + extra_seconds) * 1000)));
  }
};

struct SubmitOptions {
  std::string type;
  std::string agent;
  std::vector<std::string> capabilities;
  std::string payload;
  std::string id;
  double deadline_seconds = 0;
  double attempt_timeout_seconds = 0;
  double wait_seconds = 30;
  std::string idempotency_key;
};

struct EventsOptions {
  int replay = 0;
  int count = 0;           // 0: no limit
  double for_seconds = 0;  // 0: no limit
  std::vector<std::string> kinds;
};

// The longest --timeout, --wait, --for, --deadline: a day (mend caps its waits lower still).
constexpr double kMaxSeconds = 86400;

void add_connection_options(CLI::App* cmd, Connection& c) {
  const char* group = "Connection and output";
  cmd->add_option("--address", c.address, "mend's base URL")
      ->envname("MEND_ADDRESS")
      ->check(
          [](const std::string& url) -> std::string {
            Result<UrlParts> parts = parse_url(url);
            if (!parts.ok()) return parts.error().message;
            return {};
          },
          "URL")
      ->capture_default_str()
      ->group(group);
  cmd->add_option("--token", c.token, "The daemon's API token (POST calls need it when set)")
      ->envname("MEND_API_TOKEN")
      ->group(group);
  cmd->add_flag("--json", c.json, "Print mend's JSON instead of a table (for scripts and jq)")
      ->group(group);
  cmd->add_option("--timeout", c.timeout_seconds, "Seconds to wait for each answer")
      ->check(CLI::Range(0.001, kMaxSeconds))
      ->capture_default_str()
      ->group(group);
}

// --- Formatting ---------------------------------------------------------------------------------

// "0s", "45s", "3m12s", "2h05m", "3d04h".
std::string short_duration(double seconds) {
  const auto s = static_cast<std::int64_t>(std::floor(std::max(0.0, seconds)));
  char buffer[32];
  if (s < 60) {
    std::snprintf(buffer, sizeof buffer, "%llds", static_cast<long long>(s));
  } else if (s < 3600) {
    std::snprintf(buffer, sizeof buffer, "%lldm%02llds", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  } else if (s < 86400) {
    std::snprintf(buffer, sizeof buffer, "%lldh%02lldm", static_cast<long long>(s / 3600),
                  static_cast<long long>(s % 3600 / 60));
  } else {
    std::snprintf(buffer, sizeof buffer, "%lldd%02lldh", static_cast<long long>(s / 86400),
                  static_cast<long long>(s % 86400 / 3600));
  }
  return buffer;
}

// Every line of `text` indented by two spaces.
std::string indented(const std::string& text) {
  std::string out;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size() - 1;
    out += "  ";
    out.append(text, start, end - start + 1);
    start = end + 1;
  }
  return out;
}

std::string bytes_text(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int unit = 0;
  while (bytes >= 1024 && unit < 4) {
    bytes /= 1024;
    ++unit;
  }
  char buffer[32];
  if (unit == 0) {
    std::snprintf(buffer, sizeof buffer, "%.0f B", bytes);
  } else {
    std::snprintf(buffer, sizeof buffer, "%.1f %s", bytes, units[unit]);
  }
  return buffer;
}

// mend's timestamps: "2026-11-28T18:40:00.120Z" (UTC).
std::optional<WallClock::time_point> parse_timestamp(std::string_view text) {
  auto number_at = [&](std::size_t pos, std::size_t len, int* out) {
    if (pos + len > text.size()) return false;
    auto [end, ec] = std::from_chars(text.data() + pos, text.data() + pos + len, *out);
    return ec == std::errc() && end == text.data() + pos + len;
  };
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (text.size() < 20 || text[4] != '-' || text[7] != '-' || text[10] != 'T' || text[13] != ':' ||
      text[16] != ':' || !number_at(0, 4, &year) || !number_at(5, 2, &month) ||
      !number_at(8, 2, &day) || !number_at(11, 2, &hour) || !number_at(14, 2, &minute) ||
      !number_at(17, 2, &second)) {
    return std::nullopt;
  }
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  // Years past 2200 would overflow the clock's nanoseconds; mend writes none.
  if (year < 1970 || year > 2200) return std::nullopt;
  const std::time_t t = ::timegm(&tm);
  if (t == static_cast<std::time_t>(-1)) return std::nullopt;
  int millis = 0;
  if (text[19] == '.') number_at(20, 3, &millis);
  return WallClock::from_time_t(t) + std::chrono::milliseconds(millis);
}

double seconds_between(WallClock::time_point from, WallClock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

// Percent-encodes one path segment.
std::string path_segment(std::string_view text) {
  std::string out;
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += c;
    } else {
      char buffer[4];
      std::snprintf(buffer, sizeof buffer, "%%%02X", u);
      out += buffer;
    }
  }
  return out;
}

// "key   value" lines with the keys aligned.
std::string key_values(const std::vector<std::pair<std::string, std::string>>& rows) {
  std::size_t width = 0;
  for (const auto& [key, value] : rows) width = std::max(width, display_width(key));
  std::string out;
  for (const auto& [key, value] : rows) {
    out += key;
    out.append(width + 2 - display_width(key), ' ');
    out += printable(value);
    out += '\n';
  }
  return out;
}

// --- Talking to the daemon ----------------------------------------------------------------------

// One command's calls: prints what went wrong and remembers the exit status for it.
class Session {
 public:
  Session(std::string command, const Connection& connection, std::ostream& out, std::ostream& err,
          double extra_timeout_seconds = 0)
      : command_(std::move(command)),
        connection_(connection),
        out_(out),
        err_(err),
        api_(connection.address, connection.token, connection.timeout(extra_timeout_seconds)) {}

  // The answer when mend answered 2xx with JSON; nullopt after printing the problem.
  std::optional<ApiResponse> get(const std::string& path) { return checked(api_.get(path)); }
  std::optional<ApiResponse> post(const std::string& path, const json& body,
                                  std::vector<std::pair<std::string, std::string>> headers = {}) {
    return checked(api_.post(path, body, std::move(headers)));
  }

  ApiClient& api() { return api_; }
  int status() const noexcept { return status_; }
  bool json_output() const noexcept { return connection_.json; }
  std::ostream& out() { return out_; }

  // "mend agents: <message>" on stderr; the status to exit with.
  int fail(const std::string& message, int status = exit_status::kFailed) {
    err_ << "mend " << command_ << ": " << message << "\n";
    status_ = status;
    return status;
  }
  int fail_for(const Error& error) {
    if (error.kind == "unreachable") {
      err_ << "mend: " << error.message << "\n";
      status_ = exit_status::kUnreachable;
      return status_;
    }
    if (error.status && *error.status == 401) {
      return fail(error.message + " -- give the daemon's token with --token or MEND_API_TOKEN",
                  exit_status::kUnauthorized);
    }
    return fail(error.message);
  }
  // Prints mend's JSON answer as it came, for --json.
  void print_json(const ApiResponse& r) {
    out_ << r.body;
    if (r.body.empty() || r.body.back() != '\n') out_ << '\n';
    out_.flush();
  }

 private:
  std::optional<ApiResponse> checked(Result<ApiResponse> r) {
    if (!r.ok()) {
      fail_for(r.error());
      return std::nullopt;
    }
    if (r->status == 401) {
      fail(std::string(connection_.token.empty() ? "the daemon wants a token and none was given"
                                                 : "the daemon refused the token") +
               " (401): " + r->error_message() +
               " -- give the daemon's token with --token or MEND_API_TOKEN",
           exit_status::kUnauthorized);
      return std::nullopt;
    }
    if (r->status < 200 || r->status >= 300) {
      fail(r->error_message() + " (HTTP " + std::to_string(r->status) + ")");
      return std::nullopt;
    }
    if (r->json().is_discarded()) {
      fail("unexpected answer from mend (HTTP " + std::to_string(r->status) + "): not JSON");
      return std::nullopt;
    }
    return std::move(*r);
  }

  std::string command_;
  const Connection& connection_;
  std::ostream& out_;
  std::ostream& err_;
  ApiClient api_;
  int status_ = exit_status::kOk;
};

// Runs `render`, turning an answer of an unexpected shape into a clear failure.
template <class Render>
int rendered(Session& session, Render&& render) {
  try {
    return render();
  } catch (const json::exception& e) {
    return session.fail(std::string("unexpected answer from mend: ") + e.what());
  }
}

// How most commands end: the failure already reported, mend's JSON as it came (--json), or
// the answer rendered for people by `render(body)`.
template <class Render>
int print_answer(Session& s, const std::optional<ApiResponse>& r, Render&& render) {
  if (!r) return s.status();
  if (s.json_output()) {
    s.print_json(*r);
    return exit_status::kOk;
  }
  const json body = r->json();
  return rendered(s, [&] { return render(body); });
}

// --- agents -------------------------------------------------------------------------------------

std::string in_flight_text(const json& agent) {
  const std::string max = json_text(agent, "max_concurrent", "0");
  return json_text(agent, "in_flight", "0") + "/" + (max == "0" ? "-" : max);
}

std::string ready_text(const json& agent) {
  const json& replicas = json_member(agent, "replicas");
  std::size_t ready = 0;
  std::size_t total = 0;
  if (replicas.is_array()) {
    for (const json& r : replicas) {
      ++total;
      if (r.is_object() && r.value("ready", false)) ++ready;
    }
  }
  return std::to_string(ready) + "/" + std::to_string(total);
}

int render_agent_list(Session& s, const json& body) {
  const json& agents = json_member(body, "agents");
  if (!agents.is_array() || agents.empty()) {
    s.out() << "no agents configured\n";
    return exit_status::kOk;
  }
  TextTable table({{"NAME"},
                   {"HEALTH"},
                   {"CIRCUIT"},
                   {"IN FLIGHT", Align::right},
                   {"READY", Align::right},
                   {"CALLS", Align::right},
                   {"FAILURES", Align::right},
                   {"RETRIES", Align::right},
                   {"RESTARTS", Align::right}});
  for (const json& a : agents) {
    const json& counters = json_member(a, "counters");
    table.add_row({json_text(a, "name"), json_text(a, "health"),
                   json_text(json_member(a, "circuit"), "state"), in_flight_text(a), ready_text(a),
                   json_text(counters, "calls", "0"), json_text(counters, "failures", "0"),
                   json_text(counters, "retries", "0"), json_text(counters, "restarts", "0")});
  }
  s.out() << table.render(terminal_width());
  return exit_status::kOk;
}

std::string circuit_text(const json& circuit) {
  std::string text = json_text(circuit, "state") + " (" + json_text(circuit, "failure_count", "0") +
                     " failures, " + json_text(circuit, "transitions", "0") + " transitions";
  if (circuit.is_object() && circuit.contains("probe_in_seconds")) {
    text += ", probe in " + seconds_text(json_number(circuit, "probe_in_seconds"));
  }
  return text + ")";
}

int render_agent(Session& s, const json& a) {
  const json& counters = json_member(a, "counters");
  std::string capabilities;
  if (const json& caps = json_member(a, "capabilities"); caps.is_array()) {
    for (const json& c : caps) {
      capabilities +=
          (capabilities.empty() ? "" : ", ") + (c.is_string() ? c.get<std::string>() : c.dump());
    }
  }
  s.out() << key_values({
      {"agent", json_text(a, "name")},
      {"supervised", json_text(a, "supervised")},
      {"health", json_text(a, "health")},
      {"circuit", circuit_text(json_member(a, "circuit"))},
      {"in flight", in_flight_text(a)},
      {"capabilities", capabilities.empty() ? "-" : capabilities},
      {"generalist", json_text(a, "generalist")},
      {"counters", "calls " + json_text(counters, "calls", "0") + ", failures " +
                       json_text(counters, "failures", "0") + ", retries " +
                       json_text(counters, "retries", "0") + ", answered as fallback " +
                       json_text(counters, "answered_as_fallback", "0") + ", restarts " +
                       json_text(counters, "restarts", "0")},
  });
  const json& replicas = json_member(a, "replicas");
  if (!replicas.is_array() || replicas.empty()) {
    s.out() << "\nno replicas\n";
    return exit_status::kOk;
  }
  TextTable table({{"REPLICA", Align::right},
                   {"URL"},
                   {"READY"},
                   {"PID", Align::right},
                   {"RSS", Align::right},
                   {"RESTARTS", Align::right},
                   {"LAST EXIT", Align::left, 48, true},
                   {"LAST PROBE", Align::left, 48, true}});
  for (const json& r : replicas) {
    table.add_row(
        {json_text(r, "index"), json_text(r, "url"), json_text(r, "ready"), json_text(r, "pid"),
         r.is_object() && r.contains("rss_bytes") ? bytes_text(json_number(r, "rss_bytes")) : "-",
         json_text(r, "restarts"), json_text(r, "last_exit"), json_text(r, "last_probe")});
  }
  s.out() << "\n" << table.render(terminal_width());
  return exit_status::kOk;
}

int run_agents(Session& s, const std::string& name) {
  std::optional<ApiResponse> r =
      s.get(name.empty() ? "/v1/agents" : "/v1/agents/" + path_segment(name));
  if (!r) return s.status();
  if (s.json_output()) {
    s.print_json(*r);
    return exit_status::kOk;
  }
  const json body = r->json();
  return rendered(
      s, [&] { return name.empty() ? render_agent_list(s, body) : render_agent(s, body); });
}

// --- circuits -----------------------------------------------------------------------------------

int run_circuits(Session& s) {
  std::optional<ApiResponse> r = s.get("/v1/agents");
  if (!r) return s.status();
  const json body = r->json();
  return rendered(s, [&] {
    const json& agents = json_member(body, "agents");
    if (s.json_output()) {
      // No endpoint of its own: each agent's circuit from GET /v1/agents, under its name.
      json circuits = json::array();
      for (const json& a : agents.is_array() ? agents : json::array()) {
        json c = json_member(a, "circuit").is_object() ? json_member(a, "circuit") : json::object();
        c["agent"] = json_text(a, "name");
        circuits.push_back(std::move(c));
      }
      s.out() << json{{"circuits", circuits}}.dump() << "\n";
      return exit_status::kOk;
    }
    if (!agents.is_array() || agents.empty()) {
      s.out() << "no agents configured\n";
      return exit_status::kOk;
    }
    TextTable table({{"AGENT"},
                     {"STATE"},
                     {"FAILURES", Align::right},
                     {"TRANSITIONS", Align::right},
                     {"PROBE IN", Align::right}});
    for (const json& a : agents) {
      const json& c = json_member(a, "circuit");
      table.add_row({json_text(a, "name"), json_text(c, "state"),
                     json_text(c, "failure_count", "0"), json_text(c, "transitions", "0"),
                     c.is_object() && c.contains("probe_in_seconds")
                         ? seconds_text(json_number(c, "probe_in_seconds"))
                         : "-"});
    }
    s.out() << table.render(terminal_width());
    return exit_status::kOk;
  });
}

int run_circuit_change(Session& s, const std::string& action, const std::string& agent) {
  std::optional<ApiResponse> r = s.post("/v1/agents/" + path_segment(agent) + "/circuit",
                                        {{"state", action == "open" ? "open" : "closed"}});
  return print_answer(s, r, [&](const json& body) {
    const std::string state = json_text(json_member(body, "circuit"), "state");
    if (action == "open") {
      s.out() << agent << ": circuit " << state
              << " (held open: no traffic until `mend circuits close " << agent << "`)\n";
    } else {
      s.out() << agent << ": circuit " << state << " (its failure counts forgotten)\n";
    }
    return exit_status::kOk;
  });
}

// --- tickets and incidents ----------------------------------------------------------------------

// What the SLA column says: the time left to acknowledge, BREACHED once past, or whether the
// acknowledgement (or resolution) came in time.
std::string sla_text(const json& record, WallClock::time_point now) {
  std::optional<WallClock::time_point> due = parse_timestamp(json_text(record, "sla_due", ""));
  if (!due) return "-";
  std::optional<WallClock::time_point> answered =
      parse_timestamp(json_text(record, "acknowledged_at", ""));
  if (!answered) answered = parse_timestamp(json_text(record, "resolved_at", ""));
  if (answered) return *answered <= *due ? "met" : "missed";
  const double left = seconds_between(now, *due);
  if (left > 0) return "in " + short_duration(left);
  return "BREACHED " + short_duration(-left) + " ago";
}

int run_records(Session& s, const std::string& collection, const std::string& status) {
  std::string path = "/v1/" + collection;
  if (!status.empty()) path += "?status=" + status;
  std::optional<ApiResponse> r = s.get(path);
  return print_answer(s, r, [&](const json& body) {
    const json& records = json_member(body, "records");
    if (!records.is_array() || records.empty()) {
      s.out() << "no " << (status.empty() ? "" : status + " ") << collection << "\n";
      return exit_status::kOk;
    }
    const auto now = WallClock::now();
    TextTable table({{"ID"},
                     {"LEVEL"},
                     {"STATUS"},
                     {"AGE", Align::right},
                     {"SLA"},
                     {"OCCURRENCES", Align::right},
                     {"AGENT"},
                     {"TITLE", Align::left, 60, true}});
    for (const json& rec : records) {
      std::optional<WallClock::time_point> created =
          parse_timestamp(json_text(rec, "created_at", ""));
      table.add_row({json_text(rec, "id"), json_text(rec, "level"), json_text(rec, "status"),
                     created ? short_duration(seconds_between(*created, now)) : "-",
                     sla_text(rec, now), json_text(rec, "occurrences"), json_text(rec, "agent"),
                     json_text(rec, "title")});
    }
    s.out() << table.render(terminal_width());
    return exit_status::kOk;
  });
}

// "TKT-3" -> tickets/TKT-3, "INC-7" -> incidents/INC-7, "ESC-5" or "5" -> escalations/5.
std::optional<std::string> record_path(const std::string& id) {
  auto digits_only = [](std::string_view text) {
    return !text.empty() && text.size() <= 18 &&
           std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  std::string upper = id;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (upper.rfind("TKT-", 0) == 0 && digits_only(std::string_view(upper).substr(4))) {
    return "/v1/tickets/" + upper;
  }
  if (upper.rfind("INC-", 0) == 0 && digits_only(std::string_view(upper).substr(4))) {
    return "/v1/incidents/" + upper;
  }
  if (upper.rfind("ESC-", 0) == 0 && digits_only(std::string_view(upper).substr(4))) {
    return "/v1/escalations/" + upper.substr(4);
  }
  if (digits_only(upper)) return "/v1/escalations/" + upper;
  return std::nullopt;
}

std::string default_actor() {
  const char* user = std::getenv("USER");
  return user != nullptr && *user != '\0' ? user : "operator";
}

int run_record_action(Session& s, const std::string& action, const std::string& id,
                      const std::string& by) {
  std::optional<std::string> path = record_path(id);
  if (!path) {
    return s.fail("'" + id + "' is not a record id (TKT-3, INC-7, ESC-5 or a number)",
                  exit_status::kUsage);
  }
  if (by.empty()) return s.fail("--by must not be empty", exit_status::kUsage);
  std::optional<ApiResponse> r = s.post(*path + "/" + action, {{"by", by}});
  return print_answer(s, r, [&](const json& body) {
    const bool ack = action == "acknowledge";
    s.out() << json_text(body, "id", id) << " " << (ack ? "acknowledged" : "resolved") << " by "
            << json_text(body, ack ? "acknowledged_by" : "resolved_by", by) << " (status "
            << json_text(body, "status") << ", " << json_text(body, "level") << ": "
            << printable(json_text(body, "title")) << ")\n";
    return exit_status::kOk;
  });
}

// --- submit -------------------------------------------------------------------------------------

int render_outcome(Session& s, const json& body) {
  const json& outcome = json_member(body, "outcome");
  const std::string status = json_text(outcome, "status", json_text(body, "status"));
  std::ostream& out = s.out();
  out << "task " << json_text(body, "id") << ": " << status;
  if (const std::string by = json_text(outcome, "answered_by", ""); !by.empty()) {
    out << ", answered by " << by;
  }
  out << " (" << seconds_text(json_number(outcome, "elapsed_seconds")) << ")\n";

  const json& attempts = json_member(outcome, "attempts");
  if (attempts.is_array() && !attempts.empty()) {
    TextTable table({{"AGENT"},
                     {"REPLICA", Align::right},
                     {"ATTEMPT", Align::right},
                     {"RESULT"},
                     {"HTTP", Align::right},
                     {"DECISION"},
                     {"DELAY", Align::right},
                     {"MESSAGE", Align::left, 60, true}});
    for (const json& a : attempts) {
      const bool ok = a.is_object() && a.value("succeeded", false);
      const double delay = json_number(a, "delay_seconds");
      table.add_row({json_text(a, "agent"), json_text(a, "replica"), json_text(a, "attempt"),
                     ok ? "ok" : json_text(a, "error_type") + "/" + json_text(a, "severity"),
                     json_text(a, "status", ""), json_text(a, "decision"),
                     delay > 0 ? seconds_text(delay) : "-", json_text(a, "message", "")});
    }
    const std::size_t width = terminal_width();
    out << "attempts:\n" << indented(table.render(width > 2 ? width - 2 : 0));
  }
  const json& skipped = json_member(outcome, "skipped");
  if (skipped.is_array() && !skipped.empty()) {
    // Without --agent the plan has no primary: its empty entry says nothing.
    std::string listed;
    for (const json& k : skipped) {
      if (json_text(k, "agent", "").empty()) continue;
      listed += " " + json_text(k, "agent") + " (" + json_text(k, "role") + ": " +
                json_text(k, "reason") + ")";
    }
    if (!listed.empty()) out << "skipped:" << listed << "\n";
  }
  const json& healing = json_member(outcome, "healing");
  if (healing.is_array()) {
    for (const json& h : healing) {
      out << "healing: " << json_text(h, "agent") << " " << json_text(h, "issue") << " "
          << (h.is_object() && h.value("recovered", false) ? "recovered" : "not recovered") << "\n";
    }
  }
  if (const json& e = json_member(outcome, "escalation"); e.is_object()) {
    out << "escalation: " << json_text(e, "action") << " (" << json_text(e, "level") << ")";
    if (e.contains("record")) out << " " << json_text(e, "record");
    if (e.contains("war_room_url")) out << " " << json_text(e, "war_room_url");
    out << "\n";
  }
  if (const json& error = json_member(outcome, "error"); error.is_object() && status == "failed") {
    out << "error: " << json_text(error, "type") << "/" << json_text(error, "severity") << ": "
        << printable(json_text(error, "message")) << "\n";
  }
  if (const json& answer = json_member(outcome, "answer"); !answer.is_null()) {
    const std::size_t width = terminal_width();
    std::string text = answer.dump(-1, ' ', false, json::error_handler_t::replace);
    out << "answer: " << truncate_to_width(printable(text), width > 8 ? width - 8 : 200) << "\n";
  }
  return status == "failed" ? exit_status::kTaskFailed : exit_status::kOk;
}

// --payload: JSON text, or @FILE for a file's JSON.
std::optional<json> read_payload(const std::string& text, std::string* problem) {
  std::string source = text;
  if (!text.empty() && text.front() == '@') {
    std::ifstream in(text.substr(1), std::ios::binary);
    if (!in) {
      *problem = "--payload: cannot read " + text.substr(1);
      return std::nullopt;
    }
    std::stringstream buffer;
    buffer << in.rdbuf();
    source = buffer.str();
  }
  try {
    return json::parse(source);
  } catch (const json::parse_error& e) {
    *problem = std::string("--payload is not JSON: ") + e.what();
    return std::nullopt;
  }
}

int run_submit(const SubmitOptions& o, const Connection& c, std::ostream& out, std::ostream& err) {
  Session s("submit", c, out, err, o.wait_seconds);
  if (o.agent.empty() && o.capabilities.empty()) {
    return s.fail("give the agent (--agent) or the capabilities to choose one by (--capability)",
                  exit_status::kUsage);
  }
  json task = {{"type", o.type}};
  if (!o.agent.empty()) task["agent"] = o.agent;
  if (!o.capabilities.empty()) task["capabilities"] = o.capabilities;
  if (!o.id.empty()) task["id"] = o.id;
  if (o.deadline_seconds > 0) task["deadline"] = o.deadline_seconds;
  if (o.attempt_timeout_seconds > 0) task["attempt_timeout"] = o.attempt_timeout_seconds;
  if (!o.payload.empty()) {
    std::string problem;
    std::optional<json> payload = read_payload(o.payload, &problem);
    if (!payload) return s.fail(problem, exit_status::kUsage);
    task["payload"] = std::move(*payload);
  }
  std::vector<std::pair<std::string, std::string>> headers;
  if (!o.idempotency_key.empty()) headers.emplace_back("Idempotency-Key", o.idempotency_key);
  std::string path = "/v1/tasks";
  if (o.wait_seconds > 0) {
    char wait[32];
    std::snprintf(wait, sizeof wait, "%g", o.wait_seconds);
    path += std::string("?wait=") + wait;
  }
  std::optional<ApiResponse> r = s.post(path, task, std::move(headers));
  if (!r) return s.status();
  const json body = r->json();
  const bool done = json_text(body, "state", "") == "done";
  if (s.json_output()) s.print_json(*r);
  if (!done) {
    if (o.wait_seconds <= 0) {
      if (!s.json_output()) out << json_text(body, "id") << "\n";
      return exit_status::kOk;
    }
    err << "mend submit: " << json_text(body, "id") << " is still running after "
        << seconds_text(o.wait_seconds) << " (GET /v1/tasks/" << path_segment(json_text(body, "id"))
        << " gives its outcome once it has one)\n";
    return exit_status::kStillRunning;
  }
  if (s.json_output()) {
    return json_text(json_member(body, "outcome"), "status", "") == "failed"
               ? exit_status::kTaskFailed
               : exit_status::kOk;
  }
  return rendered(s, [&] { return render_outcome(s, body); });
}

// --- events -------------------------------------------------------------------------------------

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

// --- check-config -------------------------------------------------------------------------------

int run_check_config(const std::string& path, bool json_output, std::ostream& out,
                     std::ostream& err) {
  ConfigLoad load = load_config_file(path);
  if (json_output) {
    json report = {{"file", path}, {"valid", load.ok()}, {"warnings", load.warnings}};
    if (load.ok()) {
      std::size_t supervised = 0;
      for (const AgentConfig& a : load.config->agents) supervised += a.supervised() ? 1 : 0;
      report["agents"] = load.config->agents.size();
      report["supervised"] = supervised;
    } else {
      json problems = json::array();
      for (const ConfigProblem& p : load.problems) {
        problems.push_back({{"file", p.file},
                            {"line", p.line},
                            {"column", p.column},
                            {"key", p.key},
                            {"message", p.message}});
      }
      report["problems"] = problems;
    }
    out << report.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
    return load.ok() ? exit_status::kOk : exit_status::kFailed;
  }
  if (!load.ok()) {
    for (const ConfigProblem& p : load.problems) err << p.to_string() << "\n";
    err << path << ": " << load.problems.size()
        << (load.problems.size() == 1 ? " problem" : " problems") << "\n";
    return exit_status::kFailed;
  }
  for (const std::string& warning : load.warnings) err << "warning: " << warning << "\n";
  std::size_t supervised = 0;
  for (const AgentConfig& a : load.config->agents) supervised += a.supervised() ? 1 : 0;
  out << path << ": valid (" << load.config->agents.size() << " agents, " << supervised
      << " supervised)\n";
  return exit_status::kOk;
}

}  // namespace

// --- Registration -------------------------------------------------------------------------------

struct OperatorCommands::State {
  std::deque<Connection> connections;  // one per subcommand; a deque keeps their addresses
  std::map<const CLI::App*, Connection*> connection_of;

  CLI::App* agents = nullptr;
  std::string agent_name;

  CLI::App* circuits = nullptr;
  std::string circuit_action;
  std::string circuit_agent;

  CLI::App* tickets = nullptr;
  CLI::App* incidents = nullptr;
  std::string ticket_status;
  std::string incident_status;

  CLI::App* ack = nullptr;
  CLI::App* resolve = nullptr;
  std::string ack_id, resolve_id;
  std::string ack_by = default_actor();
  std::string resolve_by = default_actor();

  CLI::App* submit = nullptr;
  SubmitOptions submit_options;

  CLI::App* events = nullptr;
  EventsOptions events_options;

  CLI::App* check_config = nullptr;
  std::string config_path;
  bool config_json = false;

  CLI::App* with_connection(CLI::App* cmd) {
    Connection& c = connections.emplace_back();
    connection_of[cmd] = &c;
    add_connection_options(cmd, c);
    return cmd;
  }
  const Connection& connection(const CLI::App* cmd) const { return *connection_of.at(cmd); }
};

OperatorCommands::OperatorCommands(CLI::App& app) : state_(std::make_unique<State>()) {
  State& s = *state_;
  const std::vector<std::string> statuses = {"open", "acknowledged", "resolved", "active"};

  s.agents = s.with_connection(app.add_subcommand(
      "agents", "List the agents: health, circuit, load, replicas, counters (or one in detail)"));
  s.agents->add_option("name", s.agent_name, "Show this agent in detail, with its replicas");

  s.circuits = s.with_connection(app.add_subcommand(
      "circuits", "List the circuit breakers; `circuits open|close NAME` forces one"));
  s.circuits
      ->add_option("action", s.circuit_action,
                   "open: hold NAME's circuit open (no traffic) until closed; close: close "
                   "it and forget its counts")
      ->check(CLI::IsMember({"open", "close"}));
  s.circuits->add_option("agent", s.circuit_agent, "The agent whose circuit to open or close");

  s.tickets = s.with_connection(
      app.add_subcommand("tickets", "List tickets (medium and high escalations)"));
  s.tickets
      ->add_option("--status", s.ticket_status,
                   "Only these: open, acknowledged, resolved, "
                   "active (open or acknowledged)")
      ->check(CLI::IsMember(statuses));

  s.incidents = s.with_connection(
      app.add_subcommand("incidents", "List incidents (critical escalations, with war rooms)"));
  s.incidents
      ->add_option("--status", s.incident_status,
                   "Only these: open, acknowledged, "
                   "resolved, active")
      ->check(CLI::IsMember(statuses));

  // `ack` and `resolve` take the same arguments.
  auto record_action = [&](const char* name, const char* description, std::string& id,
                           std::string& by, const char* by_help) {
    CLI::App* cmd = s.with_connection(app.add_subcommand(name, description));
    cmd->add_option("id", id, "TKT-3, INC-7, ESC-5 or a number")->required();
    cmd->add_option("--by", by, by_help)->capture_default_str();
    return cmd;
  };
  s.ack = record_action("ack", "Acknowledge a ticket or incident (stops its re-escalation)",
                        s.ack_id, s.ack_by, "Who acknowledges ($USER, else operator)");
  s.resolve = record_action("resolve", "Resolve a ticket or incident", s.resolve_id, s.resolve_by,
                            "Who resolves ($USER, else operator)");

  SubmitOptions& o = s.submit_options;
  s.submit = s.with_connection(
      app.add_subcommand("submit", "Submit a task, wait for its outcome and print it"));
  s.submit->add_option("--type", o.type, "Task type: code_review, deployment, ai_analysis, ...")
      ->required();
  s.submit->add_option("--agent", o.agent, "The primary agent");
  s.submit
      ->add_option("--capability", o.capabilities,
                   "A needed capability (repeatable); without --agent mend plans by them")
      ->allow_extra_args(false);
  s.submit->add_option("--payload", o.payload, "The task's payload: JSON text, or @FILE");
  s.submit->add_option("--id", o.id, "The task's id (default: task-N)");
  s.submit->add_option("--deadline", o.deadline_seconds, "Seconds for the whole task")
      ->check(CLI::Range(0.001, kMaxSeconds));
  s.submit
      ->add_option("--attempt-timeout", o.attempt_timeout_seconds,
                   "Seconds for each call to an agent")
      ->check(CLI::Range(0.001, kMaxSeconds));
  s.submit
      ->add_option("--wait", o.wait_seconds,
                   "Seconds to wait for the outcome; 0: do not wait, print the task's id")
      ->check(CLI::Range(0.0, kMaxSeconds))
      ->capture_default_str();
  s.submit->add_option("--idempotency-key", o.idempotency_key,
                       "Submitted again with the same key, the task is not run twice");

  EventsOptions& e = s.events_options;
  s.events = s.with_connection(app.add_subcommand(
      "events", "Follow mend's decisions as they happen (the event stream), one line each"));
  s.events->add_option("--replay", e.replay, "Print the last N events first (at most 256)")
      ->check(CLI::Range(0, 256));
  s.events->add_option("--count", e.count, "Stop after N events")->check(CLI::PositiveNumber);
  s.events->add_option("--for", e.for_seconds, "Stop after this many seconds")
      ->check(CLI::Range(0.001, kMaxSeconds));
  s.events
      ->add_option("--kind", e.kinds,
                   "Only events of this kind (repeatable): task_finished, retry_scheduled, "
                   "circuit_transition, agent_process, ...")
      ->allow_extra_args(false);

  s.check_config = app.add_subcommand(
      "check-config", "Validate a configuration file; print every problem with file, line, key");
  s.check_config->add_option("file", s.config_path, "Configuration file (YAML)")->required();
  s.check_config->add_flag("--json", s.config_json,
                           "Print {\"valid\", \"agents\"} or {\"valid\": false, \"problems\"}");
}

OperatorCommands::~OperatorCommands() = default;

std::optional<int> OperatorCommands::run(std::ostream& out, std::ostream& err) {
  State& s = *state_;
  if (*s.check_config) return run_check_config(s.config_path, s.config_json, out, err);
  if (*s.agents) {
    Session session("agents", s.connection(s.agents), out, err);
    return run_agents(session, s.agent_name);
  }
  if (*s.circuits) {
    Session session("circuits", s.connection(s.circuits), out, err);
    if (s.circuit_action.empty()) return run_circuits(session);
    if (s.circuit_agent.empty()) {
      return session.fail("which agent? `mend circuits " + s.circuit_action + " NAME`",
                          exit_status::kUsage);
    }
    return run_circuit_change(session, s.circuit_action, s.circuit_agent);
  }
  if (*s.tickets) {
    Session session("tickets", s.connection(s.tickets), out, err);
    return run_records(session, "tickets", s.ticket_status);
  }
  if (*s.incidents) {
    Session session("incidents", s.connection(s.incidents), out, err);
    return run_records(session, "incidents", s.incident_status);
  }
  if (*s.ack) {
    Session session("ack", s.connection(s.ack), out, err);
    return run_record_action(session, "acknowledge", s.ack_id, s.ack_by);
  }
  if (*s.resolve) {
    Session session("resolve", s.connection(s.resolve), out, err);
    return run_record_action(session, "resolve", s.resolve_id, s.resolve_by);
  }
  if (*s.submit) return run_submit(s.submit_options, s.connection(s.submit), out, err);
  if (*s.events) return run_events(s.events_options, s.connection(s.events), out, err);
  return std::nullopt;
}

}  // namespace mend::app
