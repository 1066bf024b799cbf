// The `mend demo` HTML report (src/app/demo_html.cc) of a realistic run, rendered in headless
// Chromium: every chart draws, with marks that match the data.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "chromium.h"
#include "demo_report.h"
#include "mend_test/temp_dir.h"
#include "report_render_test_support.h"

namespace mend::testing {
namespace {

using nlohmann::json;
using report_render_test_support::count;
using report_render_test_support::events_on;
using report_render_test_support::figure_html;
using report_render_test_support::kAgents;
using report_render_test_support::realistic_report;
using report_render_test_support::ReportRenderChromium;
using report_render_test_support::runs_by_state;
using report_render_test_support::section_html;
using report_render_test_support::total;
using report_render_test_support::write_page;
using ::testing::HasSubstr;
using ::testing::Not;

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

}  // namespace
}  // namespace mend::testing
