// The `mend demo` HTML report rendered in headless Chromium from data that is not a normal run:
// hostile strings stay text and inject nothing; empty, zero-length and odd reports draw empty
// charts without a script error.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "chromium.h"
#include "demo_report.h"
#include "mend_test/temp_dir.h"
#include "report_render_test_support.h"

namespace mend::testing {
namespace {

using nlohmann::json;
using report_render_test_support::count;
using report_render_test_support::figure_html;
using report_render_test_support::kAgents;
using report_render_test_support::realistic_report;
using report_render_test_support::ReportRenderChromium;
using report_render_test_support::section_html;
using report_render_test_support::write_page;
using ::testing::HasSubstr;
using ::testing::Not;

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

}  // namespace
}  // namespace mend::testing
