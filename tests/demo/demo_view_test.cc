// The text renderings of `mend demo`: the live frame redrawn on a terminal, the progress line for
// pipes, and the end-of-run report (src/app/demo_report.cc).
#include "demo_view.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "demo_report.h"

namespace mend::app {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

LiveView sample_view() {
  LiveView v;
  v.elapsed_s = 60;
  v.duration_s = 120;
  v.base_url = "http://127.0.0.1:7070";
  v.submitted = 482;
  v.done = 480;
  v.outcomes = {
      {"succeeded", 400}, {"succeeded_after_retry", 30}, {"fallback", 40}, {"degraded", 10}};
  v.retries = 45;
  v.circuit_transitions = 4;
  v.restarts = 2;
  v.agents = {{"senior-frontend-developer", "healthy", "closed", 1, 16, 1, 1, 1},
              {"ollama-integration-specialist", "healthy", "open", 0, 16, 1, 1, 0},
              {"infrastructure-devops-manager", "unhealthy", "half_open", 2, 16, 0, 1, 0}};
  v.recent = {"[ 30.0 s] chaos    ollama-integration-specialist hangs: takes tasks, never answers",
              "[ 35.5 s] circuit  ollama-integration-specialist closed -> open"};
  return v;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// Visible characters: ANSI sequences do not count.
std::size_t visible_width(const std::string& line) {
  std::size_t n = 0;
  for (std::size_t i = 0; i < line.size(); ++i) {
    if (line[i] == '\x1b') {
      while (i < line.size() && line[i] != 'm' && line[i] != 'K') ++i;
      continue;
    }
    ++n;
  }
  return n;
}

TEST(DemoLiveFrame, ShowsProgressEveryAgentAndTheCounters) {
  const std::string frame = render_live_frame(sample_view(), 120, /*color=*/false);
  const std::vector<std::string> lines = lines_of(frame);
  // Header, column titles, three agents, two counter lines, two recent lines.
  ASSERT_EQ(lines.size(), 9u) << frame;
  EXPECT_THAT(lines[0], HasSubstr("50 %"));
  EXPECT_THAT(lines[0], HasSubstr("60 s / 120 s"));
  EXPECT_THAT(lines[0], HasSubstr("[####################....................]"));
  EXPECT_THAT(lines[2], ::testing::MatchesRegex(
                            "senior-frontend-developer +healthy +closed +1/16 +1/1 +1.*"));
  EXPECT_THAT(lines[3], ::testing::MatchesRegex(
                            "ollama-integration-specialist +healthy +open +0/16 +1/1 +0.*"));
  EXPECT_THAT(lines[4], ::testing::MatchesRegex(
                            "infrastructure-devops-manager +unhealthy +half_open +2/16 +0/1 +0.*"));
  EXPECT_THAT(lines[5], HasSubstr("tasks 480/482: ok 400  after retry 30  fallback 40  "
                                  "degraded 10  failed 0"));
  EXPECT_THAT(lines[6], HasSubstr("retries 45  circuit transitions 4  restarts 2"));
  EXPECT_THAT(lines[8], HasSubstr("closed -> open"));
  // Each line clears what the previous frame left on it; without colour, no other escape.
  for (const std::string& line : lines) {
    ASSERT_GE(line.size(), 3u);
    EXPECT_EQ(line.substr(line.size() - 3), "\x1b[K");
    EXPECT_EQ(line.find('\x1b'), line.size() - 3) << line;
  }
}

TEST(DemoLiveFrame, ANarrowTerminalGetsLinesCutToItsWidthSoThatTheRedrawHolds) {
  for (bool color : {false, true}) {
    const std::string frame = render_live_frame(sample_view(), 50, color);
    for (const std::string& line : lines_of(frame)) {
      EXPECT_LE(visible_width(line), 49u) << line;
    }
    EXPECT_EQ(lines_of(frame).size(), 9u);
  }
  // With colour, states are painted: open red, closed green.
  const std::string colored = render_live_frame(sample_view(), 120, true);
  EXPECT_THAT(colored, HasSubstr("\x1b[31mopen"));
  EXPECT_THAT(colored, HasSubstr("\x1b[32mclosed"));
}

TEST(DemoProgressLine, NamesTheCircuitsThatAreNotClosed) {
  const std::string line = render_progress_line(sample_view());
  EXPECT_THAT(line, ::testing::StartsWith("[ 60.0 s of 120] tasks 480/482: succeeded 400, "
                                          "after retry 30, fallback 40, degraded 10, failed 0"));
  EXPECT_THAT(line, HasSubstr("circuits not closed: ollama-integration-specialist open, "
                              "infrastructure-devops-manager half_open"));
  EXPECT_EQ(line.find('\n'), std::string::npos);
}

TEST(DemoTextReport, SummarizesOutcomesLatencyRecordsAndNotifications) {
  json report = {
      {"started_at", "2026-11-28T22:00:00.000Z"},
      {"duration_s", 121.5},
      {"tasks",
       {{{"status", "succeeded"}, {"latency_s", 0.05}},
        {{"status", "succeeded"}, {"latency_s", 0.05}},
        {{"status", "fallback"}, {"latency_s", 2.0}, {"answered_by", "senior-ai-engineer"}},
        {{"status", "degraded"}, {"latency_s", 0.1}}}},
      {"totals",
       {{"retries", 3},
        {"attempts", 9},
        {"mend_retries", 3},
        {"notifications_sent", 2},
        {"notifications_received", 2}}},
      {"circuit_transitions",
       {{{"t", 35.5},
         {"agent", "ollama-integration-specialist"},
         {"from", "closed"},
         {"to", "open"}}}},
      {"restarts", {{{"t", 18.3}, {"agent", "senior-frontend-developer"}, {"reason", "crash"}}}},
      {"records",
       {{{"id", "INC-3"},
         {"kind", "incident"},
         {"level", "critical"},
         {"status", "open"},
         {"sla_due", "2026-11-28T22:15:00.000Z"},
         {"occurrences", 1},
         {"title", "CRITICAL: data_corruption\x1b[2J on senior-ai-engineer"},
         {"war_room_url", "https://chat.example.com/war-room/INC-3"}}}},
      {"chaos", {{{"t", 30.0}, {"agent", "ollama-integration-specialist"}, {"detail", "hangs"}}}}};
  const std::string text = render_demo_text_report(report, /*color=*/false);
  EXPECT_THAT(text, HasSubstr("122 s, 4 tasks"));
  EXPECT_THAT(text, HasSubstr("succeeded 2 (50.0 %)  succeeded_after_retry 0  fallback 1 (25.0 %)"
                              "  degraded 1 (25.0 %)  failed 0"));
  EXPECT_THAT(text, HasSubstr("100.0 % of tasks got an answer: 75.0 % from an agent, 25.0 % "
                              "degraded"));
  EXPECT_THAT(text, HasSubstr("p50 75 ms"));
  EXPECT_THAT(text, HasSubstr("max 2.00 s"));
  EXPECT_THAT(text, HasSubstr("3 retries over 9 attempts (mend_retries_total 3)"));
  EXPECT_THAT(text, HasSubstr("senior-ai-engineer 1"));
  EXPECT_THAT(text, HasSubstr("ollama-integration-specialist   closed -> open"));
  EXPECT_THAT(text, HasSubstr("senior-frontend-developer       crash"));
  EXPECT_THAT(text, HasSubstr("1 incidents, 0 tickets"));
  EXPECT_THAT(text, HasSubstr("war room: https://chat.example.com/war-room/INC-3"));
  EXPECT_THAT(text, HasSubstr("2 delivered by mend, 2 received by the demo's webhook"));
  // An escape sequence in a title reaches the terminal as spaces.
  EXPECT_THAT(text, Not(HasSubstr("\x1b")));
  EXPECT_THAT(text, HasSubstr("CRITICAL: data_corruption [2J on senior-ai-engineer"));
}

TEST(DemoTextReport, AnEmptyOrOddReportPrintsWithoutThrowing) {
  for (const json& odd : {json::object(), json::array(), json("x"),
                          json{{"tasks", 7}, {"records", {{{"id", 3}}}, {"totals", "x"}}}}) {
    std::string text;
    ASSERT_NO_THROW(text = render_demo_text_report(odd, false)) << odd.dump();
    EXPECT_THAT(text, HasSubstr("no tasks")) << odd.dump();
  }
}

}  // namespace
}  // namespace mend::app
