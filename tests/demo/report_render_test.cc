// The `mend demo` HTML report (src/app/demo_html.cc) rendered in headless Chromium: the charts
// draw from the embedded data, their marks match the data, hostile strings stay text, odd or
// empty reports draw empty charts without a script error, and the page loads nothing.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "chromium.h"
#include "demo_report.h"
#include "mend_test/temp_dir.h"

namespace mend::testing {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

// ---- a realistic report ------------------------------------------------------------------

const std::vector<std::string> kAgents = {"senior-frontend-developer",
                                          "senior-backend-developer",
                                          "senior-full-stack-developer",
                                          "ollama-integration-specialist",
                                          "devops-engineer",
                                          "security-engineer",
                                          "data-scientist",
                                          "generalist"};

// Each agent's circuit: from each time on, this state (closed before the first).
const std::map<std::string, std::vector<std::pair<double, std::string>>> kCircuitPlan = {
    {"senior-frontend-developer", {{13.0, "open"}, {25.0, "half_open"}, {26.5, "closed"}}},
    {"senior-backend-developer",
     {{30.5, "open"}, {40.5, "half_open"}, {41.5, "open"}, {50.0, "half_open"}, {51.0, "closed"}}},
    {"ollama-integration-specialist", {{21.0, "open"}, {33.0, "half_open"}, {34.0, "closed"}}},
    {"devops-engineer", {{45.0, "isolated"}}},
};

std::string circuit_at(const std::string& agent, double t) {
  std::string state = "closed";
  auto plan = kCircuitPlan.find(agent);
  if (plan == kCircuitPlan.end()) return state;
  for (const auto& [from, s] : plan->second) {
    if (t >= from) state = s;
  }
  return state;
}

std::string health_at(const std::string& agent, double t) {
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

json realistic_report() {
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
std::string figure_html(const std::string& dom, const std::string& chart) {
  std::size_t at = dom.find("<figure data-chart=\"" + chart + "\"");
  if (at == std::string::npos) return {};
  return dom.substr(at, dom.find("</figure>", at) - at);
}

std::string section_html(const std::string& dom, const std::string& id) {
  std::size_t at = dom.find("<section id=\"" + id + "\"");
  if (at == std::string::npos) return {};
  return dom.substr(at, dom.find("</section>", at) - at);
}

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) {
    ++n;
  }
  return n;
}

// The runs of one member's state in the samples, counted as the page draws them: a sample
// without the agent breaks a run and is not drawn.
std::map<std::string, int> runs_by_state(const json& samples, const std::string& agent,
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

int total(const std::map<std::string, int>& runs) {
  int n = 0;
  for (const auto& [state, k] : runs) n += k;
  return n;
}

int events_on(const json& list, const std::string& agent) {
  return static_cast<int>(std::count_if(
      list.begin(), list.end(), [&](const json& e) { return e.value("agent", "") == agent; }));
}

std::string write_page(const TempDir& dir, const std::string& name, const json& report) {
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

// ---- (a) a realistic run ----------------------------------------------------------------------

TEST_F(ReportRenderChromium, RealisticReportDrawsAllChartsWithMarksMatchingTheData) {
  const json report = realistic_report();
  const std::string path = write_page(dir_, "report.html", report);
  if (const char* keep = std::getenv("MEND_KEEP_REPORT_HTML"); keep != nullptr && *keep != '\0') {
    std::filesystem::copy_file(path, keep, std::filesystem::copy_options::overwrite_existing);
  }
  const std::string dom = render(path);
  EXPECT_EQ(render_errors(dom), "");

  // Outcomes: one bar segment per non-empty (bucket, status), one marker per chaos event.
  const std::string outcomes = figure_tag(dom, "outcomes");
  ASSERT_EQ(tag_attribute(outcomes, "data-drawn"), "true") << outcomes;
  const double bucket_s = std::stod(tag_attribute(outcomes, "data-bucket-s"));
  const int buckets = std::stoi(tag_attribute(outcomes, "data-buckets"));
  EXPECT_GE(buckets, 30);
  EXPECT_LE(buckets, 60);
  std::set<std::pair<int, std::string>> pairs;
  for (const json& t : report["tasks"]) {
    int b = std::min(buckets - 1,
                     static_cast<int>(std::floor(t["finished_s"].get<double>() / bucket_s)));
    pairs.insert({b, t["status"].get<std::string>()});
  }
  EXPECT_EQ(std::stoul(tag_attribute(outcomes, "data-marks")),
            pairs.size() + report["chaos"].size());
  const std::string outcomes_svg = figure_html(dom, "outcomes");
  EXPECT_EQ(count(outcomes_svg, "<rect "), pairs.size());
  EXPECT_EQ(count(outcomes_svg, "class=\"chaos-marker\""), report["chaos"].size());
  for (const char* status :
       {"succeeded", "succeeded_after_retry", "fallback", "degraded", "failed", "error"}) {
    EXPECT_GT(count(outcomes_svg, "data-status=\"" + std::string(status) + "\""), 0u) << status;
  }

  // Agents: one segment per run of circuit state and of health, one marker per event.
  const std::string agents = figure_tag(dom, "agents");
  ASSERT_EQ(tag_attribute(agents, "data-drawn"), "true") << agents;
  int expected_marks = 0, open_runs = 0, isolated_runs = 0;
  for (const std::string& a : kAgents) {
    auto circuit = runs_by_state(report["samples"], a, "circuit");
    expected_marks += total(circuit) + total(runs_by_state(report["samples"], a, "health")) +
                      events_on(report["chaos"], a) + events_on(report["restarts"], a) +
                      events_on(report["healing"], a);
    open_runs += circuit["open"];
    isolated_runs += circuit["isolated"];
  }
  EXPECT_EQ(std::stoi(tag_attribute(agents, "data-marks")), expected_marks);
  EXPECT_GE(expected_marks, static_cast<int>(kAgents.size()));
  const std::string agents_svg = figure_html(dom, "agents");
  EXPECT_EQ(open_runs, 4);  // frontend, ollama, backend twice
  EXPECT_EQ(count(agents_svg, "data-state=\"open\""), static_cast<std::size_t>(open_runs));
  EXPECT_EQ(count(agents_svg, "data-state=\"isolated\""), static_cast<std::size_t>(isolated_runs));
  EXPECT_EQ(count(agents_svg, "data-state=\"half_open\""), 4u);
  EXPECT_EQ(count(agents_svg, "class=\"restart\""), 2u);
  EXPECT_EQ(count(agents_svg, "class=\"lane\""), kAgents.size());

  // Latency: one bar segment per non-empty (log bin, status), and p50/p95/p99 lines.
  const std::string latency = figure_tag(dom, "latency");
  ASSERT_EQ(tag_attribute(latency, "data-drawn"), "true") << latency;
  const int bins = std::stoi(tag_attribute(latency, "data-bins"));
  const double lo = std::stod(tag_attribute(latency, "data-min-s"));
  const double hi = std::stod(tag_attribute(latency, "data-max-s"));
  EXPECT_DOUBLE_EQ(lo, 0.001);
  EXPECT_DOUBLE_EQ(hi, 60.0);
  std::set<std::pair<int, std::string>> bin_pairs;
  std::vector<double> latencies;
  for (const json& t : report["tasks"]) {
    double v = t["latency_s"].get<double>();
    latencies.push_back(v);
    int b = v <= lo   ? 0
            : v >= hi ? bins - 1
                      : std::min(bins - 1, static_cast<int>(std::floor(std::log(v / lo) /
                                                                       std::log(hi / lo) * bins)));
    bin_pairs.insert({b, t["status"].get<std::string>()});
  }
  EXPECT_EQ(std::stoul(tag_attribute(latency, "data-marks")), bin_pairs.size() + 3);
  std::sort(latencies.begin(), latencies.end());
  auto nearest_rank = [&](double q) {
    auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(latencies.size())));
    return latencies[std::clamp<std::size_t>(rank, 1, latencies.size()) - 1];
  };
  EXPECT_DOUBLE_EQ(std::stod(tag_attribute(latency, "data-p50")), nearest_rank(0.5));
  EXPECT_DOUBLE_EQ(std::stod(tag_attribute(latency, "data-p95")), nearest_rank(0.95));
  EXPECT_DOUBLE_EQ(std::stod(tag_attribute(latency, "data-p99")), nearest_rank(0.99));

  // Tables and summary.
  const std::string records = section_html(dom, "records-table");
  for (const char* id : {"INC-1", "TKT-1", "TKT-2", "ESC-3"}) EXPECT_THAT(records, HasSubstr(id));
  EXPECT_THAT(records, HasSubstr("2026-11-28T21:15:31.000Z"));
  EXPECT_THAT(records, HasSubstr("href=\"https://war-room.example/INC-1\""));
  const std::string chaos = section_html(dom, "chaos-table");
  for (const char* action : {"crash", "latency", "error_rate", "isolate", "memory_leak"}) {
    EXPECT_THAT(chaos, HasSubstr(action));
  }
  EXPECT_THAT(section_html(dom, "transitions-table"), HasSubstr("half open"));
  EXPECT_THAT(section_html(dom, "notifications-table"), HasSubstr("incident_opened"));
  EXPECT_THAT(dom, HasSubstr("<div class=\"value\">420</div>"));
  EXPECT_THAT(dom, HasSubstr("http://127.0.0.1:41234"));

  // Links in the drawn page come only from the data.
  const std::string kHref = "href=\"";
  for (std::size_t at = dom.find(kHref); at != std::string::npos; at = dom.find(kHref, at + 1)) {
    const std::size_t begin = at + kHref.size();
    EXPECT_EQ(dom.substr(begin, dom.find('"', begin) - begin), "https://war-room.example/INC-1");
  }
  EXPECT_THAT(dom, Not(HasSubstr(" src=")));
}

// ---- (b) hostile data ---------------------------------------------------------------------------

TEST_F(ReportRenderChromium, HostileStringsStayTextAndInjectNothing) {
  const std::string close_script =
      "</script><script>document.body.setAttribute('data-pwned','1')</script>";
  const std::string image = "<img src=x onerror=\"document.body.setAttribute('data-pwned','2')\">";
  const std::string agent = close_script + image;
  json report = realistic_report();
  report["title"] = "demo " + image;
  report["agents"].push_back(agent);
  report["agents"].push_back("__proto__");
  report["agents"].push_back("constructor");
  for (json& s : report["samples"]) {
    s["agents"][agent] = {{"health", image}, {"circuit", "open"}};
    s["agents"]["__proto__"] = {{"health", "healthy"}, {"circuit", "closed"}};
  }
  report["tasks"][0]["id"] = close_script;
  report["tasks"][1]["status"] = image;  // an unknown status: drawn as "other"
  report["chaos"].push_back(
      {{"t", 5.0}, {"agent", agent}, {"action", close_script}, {"detail", image}});
  report["outcomes"][image] = 1;
  report["records"].push_back(
      {{"id", image},
       {"kind", close_script},
       {"level", "constructor"},
       {"title", image},
       {"agent", agent},
       {"war_room_url", "javascript:document.body.setAttribute('data-pwned','3')"}});
  report["records"].push_back(
      {{"id", "X-2"}, {"war_room_url", "https://ok.example/\"><img src=x onerror=alert(1)>"}});
  report["notifications"].push_back({{"t", 6.0}, {"kind", image}, {"level", close_script}});

  const std::string html = app::render_demo_html(report);
  EXPECT_EQ(count(html, "</script>"), 3u) << "only the page's own script elements close";
  EXPECT_THAT(html, Not(HasSubstr("<img")));

  const std::string dom = render(write_page(dir_, "hostile.html", report));
  EXPECT_EQ(render_errors(dom), "");
  for (const char* chart : {"outcomes", "agents", "latency"}) {
    EXPECT_EQ(tag_attribute(figure_tag(dom, chart), "data-drawn"), "true") << chart;
  }
  EXPECT_THAT(dom, Not(HasSubstr("data-pwned=\"")));
  EXPECT_THAT(dom, Not(HasSubstr("<img")));
  EXPECT_THAT(dom, Not(HasSubstr("href=\"javascript:")));
  EXPECT_EQ(count(dom, "<script"), 3u);
  // The strings are there, as text.
  EXPECT_THAT(
      dom, HasSubstr("&lt;img src=x onerror=\"document.body.setAttribute('data-pwned','2')\"&gt;"));
  EXPECT_THAT(section_html(dom, "chaos-table"), HasSubstr("&lt;/script&gt;&lt;script&gt;"));
  EXPECT_THAT(dom, HasSubstr("<title>demo &lt;img src=x"));
  EXPECT_EQ(count(figure_html(dom, "agents"), "class=\"lane\""), kAgents.size() + 3);
}

// ---- (c) empty, zero-length and odd reports -----------------------------------------------------

TEST_F(ReportRenderChromium, EmptyZeroDurationAndOddReportsDrawEmptyChartsWithoutErrors) {
  const std::vector<std::pair<std::string, json>> reports = {
      {"empty", json::object()},
      {"zero",
       {{"duration_s", 0},
        {"tasks", json::array()},
        {"agents", json::array()},
        {"samples", json::array()},
        {"outcomes", json::object()},
        {"totals", {{"tasks", 0}}}}},
      {"odd",
       {{"duration_s", "abc"},
        {"title", 7},
        {"tasks",
         {1,
          nullptr,
          "x",
          {{"status", 5}, {"latency_s", "slow"}},
          {{"finished_s", -1}, {"latency_s", -2}}}},
        {"samples", {1, nullptr, {{"t", "a"}}, {{"t", 1}, {"agents", {1, 2}}}}},
        {"agents", {{"a", 1}}},
        {"chaos", {nullptr, {{"t", "x"}}, 3}},
        {"circuit_transitions", "none"},
        {"restarts", {{"t", 1}}},
        {"records", {{{"id", {{"x", 1}}}, {"war_room_url", 5}, {"occurrences", "many"}}}},
        {"notifications", {{"a", 1}}},
        {"outcomes", {1, 2}},
        {"totals", 7}}},
  };
  for (const auto& [name, report] : reports) {
    SCOPED_TRACE(name);
    const std::string dom = render(write_page(dir_, name + ".html", report));
    EXPECT_EQ(render_errors(dom), "");
    for (const char* chart : {"outcomes", "agents", "latency"}) {
      const std::string tag = figure_tag(dom, chart);
      EXPECT_EQ(tag_attribute(tag, "data-drawn"), "true") << tag;
      EXPECT_EQ(tag_attribute(tag, "data-marks"), "0") << tag;
      EXPECT_THAT(figure_html(dom, chart), HasSubstr("class=\"no-data\"")) << chart;
    }
    EXPECT_THAT(section_html(dom, "records-table"), HasSubstr("<table"));
  }
}

// A report of agents whose only data is a zero-length run still draws them, no error.
TEST_F(ReportRenderChromium, ZeroDurationWithDataDrawsWithoutErrors) {
  json report = {
      {"duration_s", 0},
      {"agents", {"a", "b"}},
      {"tasks", {{{"id", "t1"}, {"status", "succeeded"}, {"finished_s", 0}, {"latency_s", 0}}}},
      {"samples", {{{"t", 0}, {"agents", {{"a", {{"circuit", "open"}}}}}}}}};
  const std::string dom = render(write_page(dir_, "zero-data.html", report));
  EXPECT_EQ(render_errors(dom), "");
  EXPECT_EQ(tag_attribute(figure_tag(dom, "outcomes"), "data-marks"), "1");
  EXPECT_EQ(tag_attribute(figure_tag(dom, "agents"), "data-marks"), "1");
  EXPECT_EQ(tag_attribute(figure_tag(dom, "latency"), "data-marks"), "4");
  EXPECT_THAT(figure_html(dom, "agents"), HasSubstr("no samples"));  // agent b
}

// ---- (d) self-contained, data kept intact -------------------------------------------------------

TEST_F(ReportRenderHtml, PageLoadsNothingFromOutside) {
  for (const json& report : {realistic_report(), json::object()}) {
    std::string html = app::render_demo_html(report);
    std::transform(html.begin(), html.end(), html.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    for (const char* loader : {"src=", "href=", "<link", "@import", "url(", "<iframe", "<object",
                               "<embed", "<img", "fetch(", "xmlhttprequest", "import("}) {
      EXPECT_THAT(html, Not(HasSubstr(loader)));
    }
    EXPECT_EQ(count(html, "<script"), 3u);
    EXPECT_THAT(html, HasSubstr("content=\"default-src 'none'"));
  }
}

TEST_F(ReportRenderHtml, EmbeddedDataRoundTripsAndCannotCloseItsScript) {
  json report = realistic_report();
  report["title"] = "a </SCRIPT > b <!-- c & d ]]> \u2028 \"quoted\"";
  report["records"][0]["title"] = std::string("bad utf-8: \xff\xfe end");
  const std::string html = app::render_demo_html(report);
  const std::string open = "<script type=\"application/json\" id=\"report-data\">";
  std::size_t begin = html.find(open);
  ASSERT_NE(begin, std::string::npos);
  begin += open.size();
  const std::string data = html.substr(begin, html.find("</script>", begin) - begin);
  EXPECT_THAT(data, Not(HasSubstr("<")));
  EXPECT_THAT(data, Not(HasSubstr(">")));
  EXPECT_THAT(data, Not(HasSubstr("&")));
  json parsed = json::parse(data);
  EXPECT_EQ(parsed["title"], report["title"]);
  EXPECT_EQ(parsed["tasks"], report["tasks"]);
  EXPECT_EQ(parsed["records"][0]["title"], "bad utf-8: \xef\xbf\xbd\xef\xbf\xbd end");
}

// ---- (e) a screenshot --------------------------------------------------------------------------

TEST_F(ReportRenderChromium, ScreenshotWritesAPng) {
  const std::string page = write_page(dir_, "report.html", realistic_report());
  const std::string png = dir_.file("report.png");
  auto start = std::chrono::steady_clock::now();
  RenderedPage shot = screenshot(page, png, 1280, 2200);
  ASSERT_TRUE(shot.ok) << shot.error;
  std::cout << "[ chromium ] screenshot in "
            << std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::steady_clock::now() - start)
                   .count()
            << " ms\n";
  std::ifstream in(png, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GE(bytes.size(), 24u);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  auto be32 = [&](std::size_t at) {
    return (static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[at])) << 24) |
           (static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[at + 1])) << 16) |
           (static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[at + 2])) << 8) |
           static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[at + 3]));
  };
  EXPECT_EQ(be32(16), 1280u);  // IHDR width and height
  EXPECT_EQ(be32(20), 2200u);
  EXPECT_GT(bytes.size(), 60u * 1024) << "a page of charts compresses to more than this";
}

TEST(ReportRenderChromiumSupport, MissingBrowserIsAClearError) {
  const char* saved = std::getenv("MEND_CHROMIUM");
  std::string restore = saved != nullptr ? saved : "";
  ::setenv("MEND_CHROMIUM", "/nonexistent/chromium", 1);
  EXPECT_EQ(find_chromium(), "");
  RenderedPage page = render_dom("/nonexistent.html");
  EXPECT_FALSE(page.ok);
  EXPECT_THAT(page.error, HasSubstr("scripts/setup.sh"));
  if (saved != nullptr) {
    ::setenv("MEND_CHROMIUM", restore.c_str(), 1);
  } else {
    ::unsetenv("MEND_CHROMIUM");
  }
}

// A browser that hangs is killed at the timeout, with the processes it started.
TEST(ReportRenderChromiumSupport, AHungBrowserIsKilledWithItsChildrenAtTheTimeout) {
  TempDir dir("mend-chromium-hang");
  const std::string fake = dir.file("fake-chromium"), pid_file = dir.file("child.pid");
  std::ofstream(fake) << "#!/bin/sh\nsleep 60 &\necho $! > " << pid_file << "\nwait\n";
  std::filesystem::permissions(fake, std::filesystem::perms::owner_all);
  const char* saved = std::getenv("MEND_CHROMIUM");
  std::string restore = saved != nullptr ? saved : "";
  ::setenv("MEND_CHROMIUM", fake.c_str(), 1);
  auto start = std::chrono::steady_clock::now();
  // 2 s: time enough under load for the fake to start its child and write the pid.
  RenderedPage page = render_dom(dir.file("page.html"), std::chrono::milliseconds(2000));
  auto elapsed = std::chrono::steady_clock::now() - start;
  if (saved != nullptr) {
    ::setenv("MEND_CHROMIUM", restore.c_str(), 1);
  } else {
    ::unsetenv("MEND_CHROMIUM");
  }
  EXPECT_FALSE(page.ok);
  EXPECT_THAT(page.error, HasSubstr("no result after 2000 ms"));
  EXPECT_LT(elapsed, std::chrono::seconds(8));
  int child = 0;
  std::ifstream(pid_file) >> child;
  ASSERT_GT(child, 0);
  // Gone, or a zombie waiting for init to reap it.
  auto gone = [child] {
    std::ifstream stat("/proc/" + std::to_string(child) + "/stat");
    std::string pid, comm, state;
    return !(stat >> pid >> comm >> state) || state == "Z";
  };
  for (int i = 0; i < 100 && !gone(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(gone()) << "the fake browser's child " << child << " survived";
}

}  // namespace
}  // namespace mend::testing
