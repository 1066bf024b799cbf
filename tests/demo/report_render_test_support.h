// Test support for the report's rendering tests (report_render_*_test.cc): a realistic report of
// a one-minute run, helpers that read the dumped DOM, and the two fixtures: the page as text, and
// the page opened in headless Chromium.
#ifndef MEND_TESTS_DEMO_REPORT_RENDER_TEST_SUPPORT_H_
#define MEND_TESTS_DEMO_REPORT_RENDER_TEST_SUPPORT_H_

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "chromium.h"
#include "demo_report.h"
#include "mend_test/temp_dir.h"

namespace mend::testing::report_render_test_support {

using nlohmann::json;

// ---- a realistic report ------------------------------------------------------------------

inline const std::vector<std::string> kAgents = {"senior-frontend-developer",
                                                 "senior-backend-developer",
                                                 "senior-full-stack-developer",
                                                 "ollama-integration-specialist",
                                                 "devops-engineer",
                                                 "security-engineer",
                                                 "data-scientist",
                                                 "generalist"};

// Each agent's circuit: from each time on, this state (closed before the first).
inline const std::map<std::string, std::vector<std::pair<double, std::string>>> kCircuitPlan = {
    {"senior-frontend-developer", {{13.0, "open"}, {25.0, "half_open"}, {26.5, "closed"}}},
    {"senior-backend-developer",
     {{30.5, "open"}, {40.5, "half_open"}, {41.5, "open"}, {50.0, "half_open"}, {51.0, "closed"}}},
    {"ollama-integration-specialist", {{21.0, "open"}, {33.0, "half_open"}, {34.0, "closed"}}},
    {"devops-engineer", {{45.0, "isolated"}}},
};

inline std::string circuit_at(const std::string& agent, double t) {
  std::string state = "closed";
  auto plan = kCircuitPlan.find(agent);
  if (plan == kCircuitPlan.end()) return state;
  for (const auto& [from, s] : plan->second) {
    if (t >= from) state = s;
  }
  return state;
}

inline std::string health_at(const std::string& agent, double t) {
  if (t < 1.0) return "unknown";
  std::string c = circuit_at(agent, t);
  return c == "open" || c == "isolated" ? "unhealthy" : "healthy";
}

// Deterministic across standard libraries: raw mt19937 output, no distribution objects.
class Dice {
 public:
  double uniform() { return static_cast<double>(rng_()) / 4294967296.0; }
  double log_uniform(double lo, double hi) { return lo * std::pow(hi / lo, uniform()); }

 private:
  std::mt19937 rng_{20261128};
};

inline json realistic_report() {
  json r;
  r["title"] = "mend demo";
  r["version"] = "0.1.0";
  r["started_at"] = "2026-11-28T21:00:00.000Z";
  r["duration_s"] = 60.0;
  r["base_url"] = "http://127.0.0.1:41234";
  r["directory"] = "/tmp/mend-demo-a1b2c3";
  r["agents"] = kAgents;
  r["chains"] = {{"senior-frontend-developer", {"senior-full-stack-developer", "generalist"}}};
  r["task_types"] = {"code_review", "deployment", "ai_analysis", "security_scan"};

  Dice dice;
  json tasks = json::array();
  std::map<std::string, int> outcomes;
  int attempts = 0, retries = 0;
  for (int i = 0; i < 420; ++i) {
    const std::string primary = kAgents[static_cast<std::size_t>(i) % kAgents.size()];
    const double submitted = i * 0.14;
    const std::string circuit = circuit_at(primary, submitted);
    // Statuses by position, so that each occurs; latencies from the dice.
    std::string status = "succeeded";
    double latency = dice.log_uniform(0.003, 2.0);
    if (circuit == "open" || circuit == "isolated") {
      status = i % 5 < 3 ? "fallback" : "degraded";
      latency = status == "fallback" ? dice.log_uniform(0.05, 0.8) : dice.log_uniform(0.002, 0.02);
    } else if (i % 13 == 4) {
      status = "succeeded_after_retry";
      latency += dice.log_uniform(1.0, 4.0);
    } else if (i % 61 == 7) {
      status = "failed";
      latency = dice.log_uniform(5.0, 30.0);
    } else if (i % 71 == 9) {
      status = "error";
      latency = dice.log_uniform(0.0005, 0.004);
    }
    latency = std::min(latency, 59.9 - submitted);  // all finished within the run
    const int task_retries = status == "succeeded_after_retry" ? 1 + i % 3 : 0;
    json task = {{"id", "task-" + std::to_string(i + 1)},
                 {"type", r["task_types"][static_cast<std::size_t>(i) % 4]},
                 {"primary", primary},
                 {"status", status},
                 {"answered_by", status == "fallback" ? "generalist" : primary},
                 {"submitted_s", submitted},
                 {"finished_s", submitted + latency},
                 {"latency_s", latency},
                 {"attempts", 1 + task_retries},
                 {"retries", task_retries}};
    if (status == "failed") task["escalation"] = "TKT-2";
    tasks.push_back(task);
    outcomes[status] += 1;
    attempts += 1 + task_retries;
    retries += task_retries;
  }
  r["tasks"] = tasks;
  r["outcomes"] = outcomes;

  json samples = json::array();
  for (int k = 1; k <= 120; ++k) {
    const double t = k * 0.5;
    json agents = json::object();
    for (const std::string& a : kAgents) {
      if (a == "generalist" && t < 2.0) continue;  // not polled yet: a gap in its lane
      agents[a] = {{"health", health_at(a, t)},
                   {"circuit", circuit_at(a, t)},
                   {"in_flight", k % 3},
                   {"ready", 1},
                   {"replicas", 1}};
    }
    samples.push_back({{"t", t}, {"agents", agents}});
  }
  r["samples"] = samples;

  r["chaos"] = json::array({
      {{"t", 12.0},
       {"agent", "senior-frontend-developer"},
       {"action", "crash"},
       {"detail", "SIGKILL to the agent's process"}},
      {{"t", 20.0},
       {"agent", "ollama-integration-specialist"},
       {"action", "latency"},
       {"detail", "+2 s on every task"}},
      {{"t", 30.0},
       {"agent", "senior-backend-developer"},
       {"action", "error_rate"},
       {"detail", "50 % of tasks answer 503"}},
      {{"t", 45.0},
       {"agent", "devops-engineer"},
       {"action", "isolate"},
       {"detail", "operator isolates the circuit"}},
      {{"t", 50.0},
       {"agent", "data-scientist"},
       {"action", "memory_leak"},
       {"detail", "RSS grows 50 MB/s"}},
  });
  json transitions = json::array();
  for (const auto& [agent, plan] : kCircuitPlan) {
    std::string from = "closed";
    for (const auto& [t, to] : plan) {
      transitions.push_back({{"t", t}, {"agent", agent}, {"from", from}, {"to", to}});
      from = to;
    }
  }
  r["circuit_transitions"] = transitions;
  r["restarts"] = json::array({
      {{"t", 14.2}, {"agent", "senior-frontend-developer"}, {"reason", "crash"}},
      {{"t", 52.0}, {"agent", "data-scientist"}, {"reason", "recovery"}},
  });
  r["healing"] = json::array({{{"t", 51.0},
                               {"agent", "data-scientist"},
                               {"detail", "high_memory_usage: caches cleared"}}});
  r["records"] = json::array({
      {{"id", "INC-1"},
       {"kind", "incident"},
       {"level", "critical"},
       {"status", "open"},
       {"title", "senior-backend-developer unavailable"},
       {"agent", "senior-backend-developer"},
       {"error_type", "temporary_unavailable"},
       {"occurrences", 37},
       {"created_at", "2026-11-28T21:00:31.000Z"},
       {"sla_due", "2026-11-28T21:15:31.000Z"},
       {"war_room_url", "https://war-room.example/INC-1"}},
      {{"id", "TKT-1"},
       {"kind", "ticket"},
       {"level", "medium"},
       {"status", "open"},
       {"title", "network_timeout on ollama-integration-specialist"},
       {"agent", "ollama-integration-specialist"},
       {"occurrences", 5},
       {"sla_due", "2026-11-29T21:00:20.000Z"}},
      {{"id", "TKT-2"},
       {"kind", "ticket"},
       {"level", "high"},
       {"status", "acknowledged"},
       {"title", "processing_failed"},
       {"occurrences", outcomes["failed"]},
       {"sla_due", "2026-11-28T23:00:05.000Z"}},
      {{"id", "ESC-3"},
       {"kind", "escalation"},
       {"level", "low"},
       {"status", "resolved"},
       {"title", "rate limited"}},
  });
  r["notifications"] = json::array({
      {{"t", 20.5}, {"kind", "ticket_opened"}, {"record", "TKT-1"}, {"level", "medium"}},
      {{"t", 31.0}, {"kind", "incident_opened"}, {"record", "INC-1"}, {"level", "critical"}},
      {{"t", 31.1}, {"kind", "page"}, {"record", "INC-1"}, {"level", "critical"}},
      {{"t", 33.0}, {"kind", "ticket_opened"}, {"record", "TKT-2"}, {"level", "high"}},
      {{"t", 46.0}, {"kind", "ticket_updated"}, {"record", "TKT-2"}, {"level", "high"}},
      {{"t", 55.0}, {"kind", "record_resolved"}, {"record", "ESC-3"}, {"level", "low"}},
  });
  r["totals"] = {{"tasks", 420},
                 {"attempts", attempts},
                 {"retries", retries},
                 {"fallbacks", outcomes["fallback"]},
                 {"degraded", outcomes["degraded"]},
                 {"failed", outcomes["failed"] + outcomes["error"]},
                 {"circuit_transitions", transitions.size()},
                 {"restarts", 2},
                 {"self_healing", 1},
                 {"notifications_sent", 6},
                 {"notifications_received", 6}};
  return r;
}

// ---- reading the dumped DOM ----------------------------------------------------------------

// The element from <figure data-chart="NAME"> to its </figure>.
inline std::string figure_html(const std::string& dom, const std::string& chart) {
  std::size_t at = dom.find("<figure data-chart=\"" + chart + "\"");
  if (at == std::string::npos) return {};
  return dom.substr(at, dom.find("</figure>", at) - at);
}

inline std::string section_html(const std::string& dom, const std::string& id) {
  std::size_t at = dom.find("<section id=\"" + id + "\"");
  if (at == std::string::npos) return {};
  return dom.substr(at, dom.find("</section>", at) - at);
}

inline std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) {
    ++n;
  }
  return n;
}

// The runs of one member's state in the samples, counted as the page draws them: a sample
// without the agent breaks a run and is not drawn.
inline std::map<std::string, int> runs_by_state(const json& samples, const std::string& agent,
                                                const std::string& member) {
  std::map<std::string, int> runs;
  std::string previous;
  for (const json& s : samples) {
    std::string state;
    if (s["agents"].contains(agent)) state = s["agents"][agent][member].get<std::string>();
    if (state != previous && !state.empty()) runs[state] += 1;
    previous = state;
  }
  return runs;
}

inline int total(const std::map<std::string, int>& runs) {
  int n = 0;
  for (const auto& [state, k] : runs) n += k;
  return n;
}

inline int events_on(const json& list, const std::string& agent) {
  return static_cast<int>(std::count_if(
      list.begin(), list.end(), [&](const json& e) { return e.value("agent", "") == agent; }));
}

inline std::string write_page(const TempDir& dir, const std::string& name, const json& report) {
  std::string path = dir.file(name);
  std::ofstream(path, std::ios::binary) << app::render_demo_html(report);
  return path;
}

// Tests that need no browser: the page as text.
class ReportRenderHtml : public ::testing::Test {};

// Tests that open the page in headless Chromium: without it they fail, saying how to get it.
class ReportRenderChromium : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(find_chromium().empty()) << kChromiumMissing; }

  std::string render(const std::string& path) {
    auto start = std::chrono::steady_clock::now();
    RenderedPage page = render_dom(path, std::chrono::seconds(30));
    EXPECT_TRUE(page.ok) << page.error;
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::steady_clock::now() - start)
                  .count();
    std::cout << "[ chromium ] " << std::filesystem::path(path).filename().string()
              << " rendered in " << ms << " ms\n";
    return page.dom;
  }

  TempDir dir_{"mend-report-render"};
};

}  // namespace mend::testing::report_render_test_support

#endif  // MEND_TESTS_DEMO_REPORT_RENDER_TEST_SUPPORT_H_
