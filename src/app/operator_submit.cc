// `mend submit`: submits a task, waits for its outcome and prints it.
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <utility>

#include "json_fields.h"
#include "mend/core/text.h"
#include "operator_commands.h"
#include "operator_format.h"
#include "table.h"

namespace mend::app {
namespace {

using nlohmann::json;

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

}  // namespace

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

}  // namespace mend::app
