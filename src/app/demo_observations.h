// File: src/app/demo_observations.h (internal to the `mend` binary)
//
// What a `mend demo` run sees, collected from its threads: the submitters' task outcomes, the
// event stream (circuit transitions, process starts and exits, self-healing, escalations), the
// samples of GET /v1/agents, the chaos injected and the webhook's notifications. It feeds the live
// view (view(), take_new_lines()) and, at the end, the report (fill_report(), demo_report.h).
//
//   Observations seen;
//   seen.start_clock();
//   seen.add_event(event);                  // from ApiClient::follow_events
//   LiveView v = seen.view();
//   seen.fill_report(report);
//
// Thread-safety: every member function may be called from any thread; one mutex guards the
// state. Members of unexpected types in what the daemon sends are skipped, never thrown.
#ifndef MEND_APP_DEMO_OBSERVATIONS_H_
#define MEND_APP_DEMO_OBSERVATIONS_H_

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <deque>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "api_client.h"
#include "demo_script.h"
#include "demo_view.h"

namespace mend::app {

using json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

// Everything the threads of the run collect, under one lock.
class Observations {
 public:
  // Times are counted from here: the run's beginning, after the set-up.
  void start_clock() { start_ns_ = SteadyClock::now().time_since_epoch().count(); }

  double now_s() const {
    const SteadyClock::time_point start{SteadyClock::duration(start_ns_.load())};
    return std::chrono::duration<double>(SteadyClock::now() - start).count();
  }

  void task_submitted() {
    std::lock_guard lock(mu_);
    ++submitted_;
  }
  void task_done(json task) {
    std::lock_guard lock(mu_);
    ++view_.outcomes[task.value("status", std::string("error"))];
    view_.retries += task.value("retries", 0);
    if (task.contains("escalation")) ++view_.escalations;
    tasks_.push_back(std::move(task));
  }
  void add_sample_locked(double t, const json& agents) {
    json sample = {{"t", t}, {"agents", json::object()}};
    view_.agents.clear();
    for (const json& a : agents) {
      if (!a.is_object()) continue;
      AgentRow row;
      row.name = a.value("name", std::string());
      row.health = a.value("health", std::string("unknown"));
      if (auto c = a.find("circuit"); c != a.end() && c->is_object()) {
        row.circuit = c->value("state", std::string("unknown"));
      }
      row.in_flight = a.value("in_flight", 0);
      row.max_concurrent = a.value("max_concurrent", 0);
      if (auto r = a.find("replicas"); r != a.end() && r->is_array()) {
        row.replicas = static_cast<int>(r->size());
        for (const json& replica : *r) row.ready += replica.value("ready", false) ? 1 : 0;
      }
      if (auto c = a.find("counters"); c != a.end() && c->is_object()) {
        row.restarts = c->value("restarts", 0);
      }
      sample["agents"][row.name] = {{"health", row.health},
                                    {"circuit", row.circuit},
                                    {"in_flight", row.in_flight},
                                    {"ready", row.ready},
                                    {"replicas", row.replicas}};
      view_.agents.push_back(std::move(row));
    }
    samples_.push_back(std::move(sample));
  }
  void add_chaos(json step) {
    std::lock_guard lock(mu_);
    remember(step.value("t", 0.0), "chaos",
             step.value("agent", std::string()) + " " + step.value("detail", std::string()));
    chaos_.push_back(std::move(step));
  }
  void add_notification(const json& body) {
    std::lock_guard lock(mu_);
    const double t = now_s();
    json n = {{"t", t},
              {"kind", body.value("event", std::string("?"))},
              {"record", body.value("record", std::string())},
              {"level", body.value("level", std::string())}};
    ++view_.notifications;
    remember(t, "notify",
             n["kind"].get<std::string>() + " " + n["record"].get<std::string>() + " (" +
                 n["level"].get<std::string>() + ")");
    notifications_.push_back(std::move(n));
  }
  // An event from mend's stream (GET /v1/events).
  void add_event(const ServerEvent& e) {
    json j = json::parse(e.data, nullptr, false);
    if (!j.is_object()) return;
    std::lock_guard lock(mu_);
    try {
      add_event_locked(e.name, j);
    } catch (const json::exception&) {
      // A member of an unexpected type: the event is left out, the run goes on.
    }
  }

  void add_sample(double t, const json& agents) {
    std::lock_guard lock(mu_);
    try {
      add_sample_locked(t, agents);
    } catch (const json::exception&) {
    }
  }

 private:
  void add_event_locked(const std::string& name, const json& j) {
    const double t = now_s();
    const std::string source = j.value("source", std::string());
    if (name == "circuit_transition") {
      const std::string from = j.value("from", std::string());
      const std::string to = j.value("to", std::string());
      transitions_.push_back({{"t", t}, {"agent", source}, {"from", from}, {"to", to}});
      ++view_.circuit_transitions;
      remember(t, "circuit", source + " " + from + " -> " + to);
    } else if (name == "agent_process") {
      const std::string process = j.value("process", source);
      const std::string what = j.value("event", std::string());
      // A start after an exit is a restart (the first starts happened during the set-up).
      if (what == "exited" || what == "stopped") {
        exited_.insert(process);
        remember(t, "exit", source + ": " + j.value("detail", std::string("exited")));
      } else if (what == "started" && exited_.erase(process) > 0) {
        restarts_.push_back({{"t", t}, {"agent", source}});
        ++view_.restarts;
        remember(t, "restart",
                 source + " runs again (pid " + std::to_string(j.value("pid", 0)) + ")");
      }
    } else if (name == "agent_health") {
      const std::string detail = j.value("detail", std::string());
      if (detail.find("liveness") != std::string::npos) liveness_failures_[source].push_back(t);
      if (detail.find("not ready") != std::string::npos ||
          detail.find("liveness") != std::string::npos) {
        remember(t, "health", source + ": " + detail);
      }
    } else if (name == "self_healing") {
      // The workflow's events name the agent as their source; the memory watch's report has it
      // as "agent".
      const std::string agent = source.empty() ? j.value("agent", std::string()) : source;
      std::string detail = j.value("detail", std::string());
      if (detail.empty()) detail = summarize_healing(j);
      healing_.push_back({{"t", t}, {"agent", agent}, {"detail", detail}});
      healing_times_[agent].push_back(t);
      ++view_.self_healing;
      remember(t, "heal", agent + ": " + detail);
    } else if (name == "escalated") {
      // Each task that escalates says so; the timeline shows each record once.
      const std::string record = j.value("detail", std::string());
      if (escalated_records_.insert(record).second) {
        remember(t, "escalate", source + ": " + record);
      }
    } else if (name == "fallback_used") {
      ++view_.fallbacks;
    }
  }

 public:
  LiveView view() const {
    std::lock_guard lock(mu_);
    LiveView v = view_;
    v.submitted = submitted_;
    v.done = static_cast<int>(tasks_.size());
    v.recent.assign(recent_.begin(), recent_.end());
    return v;
  }
  // Lines of the timeline not yet printed (line-by-line output).
  std::vector<std::string> take_new_lines() {
    std::lock_guard lock(mu_);
    std::vector<std::string> out(unprinted_.begin(), unprinted_.end());
    unprinted_.clear();
    return out;
  }
  int submitted() const {
    std::lock_guard lock(mu_);
    return submitted_;
  }
  int done() const {
    std::lock_guard lock(mu_);
    return static_cast<int>(tasks_.size());
  }

  void fill_report(json& report) const {
    std::lock_guard lock(mu_);
    json tasks = json::array();
    for (const json& t : tasks_) tasks.push_back(t);
    std::sort(tasks.begin(), tasks.end(), [](const json& a, const json& b) {
      return a.value("submitted_s", 0.0) < b.value("submitted_s", 0.0);
    });
    report["tasks"] = std::move(tasks);
    json outcomes = json::object();
    for (const auto& [status, count] : view_.outcomes) outcomes[status] = count;
    report["outcomes"] = std::move(outcomes);
    report["samples"] = samples_;
    report["chaos"] = chaos_;
    report["circuit_transitions"] = transitions_;
    json restarts = json::array();
    for (json r : restarts_) {
      r["reason"] = restart_reason(r["agent"].get<std::string>(), r["t"].get<double>());
      restarts.push_back(std::move(r));
    }
    report["restarts"] = std::move(restarts);
    report["healing"] = healing_;
    report["notifications"] = notifications_;
  }

 private:
  void remember(double t, const std::string& what, const std::string& text) {
    char stamp[32];
    std::snprintf(stamp, sizeof stamp, "[%5.1f s] %-8s ", t, what.c_str());
    std::string line = stamp + text;
    // Agents' messages reach the terminal through this line: no control characters.
    for (char& c : line) {
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
    }
    recent_.push_back(line);
    while (recent_.size() > 6) recent_.pop_front();
    unprinted_.push_back(std::move(line));
  }
  // Why an agent was restarted, from what came around it: self-healing asked for it (recovery;
  // its report is published once the agent is back, so it may come after the restart), its
  // liveness probe kept failing just before (probe), or else the process died (crash).
  std::string restart_reason(const std::string& agent, double t) const {
    auto near = [&](const std::map<std::string, std::vector<double>>& times, double before,
                    double after) {
      auto it = times.find(agent);
      if (it == times.end()) return false;
      return std::any_of(it->second.begin(), it->second.end(),
                         [&](double x) { return x >= t - before && x <= t + after; });
    };
    if (near(healing_times_, 10.0, 30.0)) return "recovery";
    if (near(liveness_failures_, 10.0, 0.5)) return "probe";
    return "crash";
  }

  // "high_memory_usage: clear caches, graceful restart" from a HealingReport's JSON.
  static std::string summarize_healing(const json& j) {
    std::string out = j.contains("issue") && j["issue"].is_string() ? j["issue"].get<std::string>()
                                                                    : "self-healing";
    if (auto r = j.find("recovery"); r != j.end() && r->is_object()) {
      if (auto steps = r->find("steps"); steps != r->end() && steps->is_array()) {
        std::string list;
        for (const json& step : *steps) {
          if (step.is_string()) list += (list.empty() ? "" : ", ") + step.get<std::string>();
        }
        if (!list.empty()) out += ": " + list;
      }
    }
    return out;
  }

  std::atomic<SteadyClock::rep> start_ns_{SteadyClock::now().time_since_epoch().count()};
  mutable std::mutex mu_;
  int submitted_ = 0;
  LiveView view_;
  std::vector<json> tasks_;
  std::vector<json> samples_;
  std::vector<json> chaos_;
  std::vector<json> transitions_;
  std::vector<json> restarts_;
  std::vector<json> healing_;
  std::vector<json> notifications_;
  std::set<std::string> exited_;  // processes that exited and have not started again
  std::set<std::string> escalated_records_;
  std::map<std::string, std::vector<double>> healing_times_;
  std::map<std::string, std::vector<double>> liveness_failures_;
  std::deque<std::string> recent_;
  std::deque<std::string> unprinted_;
};

// The task as the report keeps it, from the answer of POST /v1/tasks or GET /v1/tasks/ID.
inline json task_record(const json& answer, const TaskKind& kind, const std::string& id,
                        double submitted_s, double finished_s) {
  json t = {{"id", id},
            {"type", kind.type},
            {"primary", kind.primary},
            {"submitted_s", submitted_s},
            {"finished_s", finished_s},
            {"latency_s", finished_s - submitted_s}};
  const json* outcome = nullptr;
  if (auto it = answer.find("outcome"); it != answer.end() && it->is_object()) outcome = &*it;
  if (outcome == nullptr) {
    t["status"] = "error";
    t["attempts"] = 0;
    t["retries"] = 0;
    return t;
  }
  t["status"] = outcome->value("status", std::string("error"));
  t["answered_by"] = outcome->value("answered_by", std::string());
  int attempts = 0, retries = 0;
  if (auto a = outcome->find("attempts"); a != outcome->end() && a->is_array()) {
    attempts = static_cast<int>(a->size());
    for (const json& attempt : *a) retries += attempt.value("decision", "") == "retry" ? 1 : 0;
  }
  t["attempts"] = attempts;
  t["retries"] = retries;
  if (auto e = outcome->find("escalation"); e != outcome->end() && e->is_object()) {
    if (std::string record = e->value("record", std::string()); !record.empty()) {
      t["escalation"] = record;
    }
  }
  return t;
}

// Sums the samples of a Prometheus metric whose labels contain `label_filter` (e.g.
// `result="delivered"`; empty: all).
inline double metric_sum(const std::string& text, const std::string& name,
                         const std::string& label_filter = "") {
  double sum = 0;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] == '#' || line.rfind(name, 0) != 0) continue;
    const char next = line.size() > name.size() ? line[name.size()] : '\0';
    if (next != '{' && next != ' ') continue;
    if (!label_filter.empty() && line.find(label_filter) == std::string::npos) continue;
    const std::size_t space = line.rfind(' ');
    try {
      sum += std::stod(line.substr(space + 1));
    } catch (const std::exception&) {
    }
  }
  return sum;
}

}  // namespace mend::app

#endif  // MEND_APP_DEMO_OBSERVATIONS_H_
