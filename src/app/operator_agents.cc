// `mend agents` and `mend circuits` (and `circuits open|close NAME`): the agents, their replicas
// and their circuit breakers.
#include <cstddef>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "json_fields.h"
#include "mend/core/text.h"
#include "operator_commands.h"
#include "operator_format.h"
#include "table.h"

namespace mend::app {
namespace {

using nlohmann::json;

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

// Whether the agent's balancer has ejected the replica, and for how long still; "-" when the
// daemon does not say (one older than replica balancing).
std::string ejected_text(const json& balancer) {
  if (!balancer.is_object() || !balancer.contains("ejected")) return "-";
  if (!balancer.value("ejected", false)) return "no";
  if (!balancer.contains("ejected_for_seconds")) return "yes";
  return "yes (" + seconds_text(json_number(balancer, "ejected_for_seconds")) + " left)";
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
                   {"OUTSTANDING", Align::right},
                   {"EJECTED"},
                   {"PID", Align::right},
                   {"RSS", Align::right},
                   {"RESTARTS", Align::right},
                   {"LAST EXIT", Align::left, 48, true},
                   {"LAST PROBE", Align::left, 48, true}});
  for (const json& r : replicas) {
    const json& balancer = json_member(r, "balancer");
    table.add_row(
        {json_text(r, "index"), json_text(r, "url"), json_text(r, "ready"),
         json_text(balancer, "outstanding"), ejected_text(balancer), json_text(r, "pid"),
         r.is_object() && r.contains("rss_bytes") ? bytes_text(json_number(r, "rss_bytes")) : "-",
         json_text(r, "restarts"), json_text(r, "last_exit"), json_text(r, "last_probe")});
  }
  s.out() << "\n" << table.render(terminal_width());
  return exit_status::kOk;
}

}  // namespace

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

}  // namespace mend::app
