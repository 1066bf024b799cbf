// `mend demo` run for real: the binary, eight supervised sample agents, the chaos timeline, on a
// 30-second run. The test reads the report the demo wrote and checks that every failure the
// timeline injected was seen and handled the way the specification says, then renders the HTML
// report in headless Chromium and checks that its charts drew.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "chromium.h"
#include "mend_test/child_process.h"
#include "mend_test/paths.h"
#include "mend_test/temp_dir.h"

namespace mend::testing {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// One demo run shared by the tests below (about 40 s). Under ctest, the fixture test `demo_run`
// (tests/CMakeLists.txt) makes it once and names its directory in MEND_DEMO_RUN_DIR, with the
// demo's stdout.txt, stderr.txt and exit_status; run alone, the binary makes its own.
class DemoRunTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (const char* shared = std::getenv("MEND_DEMO_RUN_DIR"); shared != nullptr && *shared) {
      run_dir_ = new std::string(shared);
      output_ = new std::string(read_file(path("stdout.txt")));
      const std::string status = read_file(path("exit_status"));
      exit_status_ = status.empty() ? -1 : std::atoi(status.c_str());
    } else {
      own_dir_ = new TempDir();
      run_dir_ = new std::string(own_dir_->path().string());
      output_ = new std::string();
      ChildProcess demo(kMendBinary,
                        {"demo", "--duration", "30", "--rate", "6", "--live", "never", "--dir",
                         *run_dir_, "--agent-command", kSampleAgentBinary},
                        path("stderr.txt"));
      const auto deadline = std::chrono::steady_clock::now() + 150s;
      while (std::chrono::steady_clock::now() < deadline) {
        std::optional<std::string> line = demo.read_line(1000ms);
        if (line) {
          *output_ += *line + "\n";
          continue;
        }
        if (demo.wait_exit(0ms)) break;
      }
      std::optional<int> status = demo.wait_exit(10s);
      exit_status_ = status ? *status : -1;
    }
    report_ = new json(json::parse(read_file(path("mend-demo-report.json")), nullptr,
                                   /*allow_exceptions=*/false));
  }
  static void TearDownTestSuite() {
    delete report_;
    delete output_;
    delete run_dir_;
    delete own_dir_;
  }

  static const std::string& stdout_text() { return *output_; }
  static const json& report() { return *report_; }
  static std::string path(const std::string& name) { return *run_dir_ + "/" + name; }

  // The agents whose circuit went to `to` at some point.
  static std::set<std::string> agents_whose_circuit_went(const std::string& to) {
    std::set<std::string> out;
    for (const json& t : report()["circuit_transitions"]) {
      if (t["to"] == to) out.insert(t["agent"].get<std::string>());
    }
    return out;
  }

  static inline TempDir* own_dir_ = nullptr;
  static inline std::string* run_dir_ = nullptr;
  static inline std::string* output_ = nullptr;
  static inline json* report_ = nullptr;
  static inline int exit_status_ = -1;
};

TEST_F(DemoRunTest, RunsToTheEndAndWritesItsReport) {
  ASSERT_EQ(exit_status_, 0) << stdout_text() << read_file(path("stderr.txt"));
  ASSERT_TRUE(report().is_object()) << "no JSON report";
  const std::string out = stdout_text();
  EXPECT_THAT(out, ::testing::HasSubstr("8 agents ready at http://127.0.0.1:"));
  EXPECT_THAT(out, ::testing::HasSubstr("mend demo: the report"));
  EXPECT_THAT(out, ::testing::HasSubstr("Report: " + path("mend-demo-report.html")));
  // Line-by-line output (stdout is not a terminal): no escape sequences, a progress line.
  EXPECT_EQ(out.find("\x1b["), std::string::npos);
  EXPECT_THAT(out, ::testing::HasSubstr("] tasks "));
  for (const char* file : {"mend.yaml", "mend.log", "mend.db", "mend-demo-report.html"}) {
    EXPECT_TRUE(std::ifstream(path(file)).good()) << file;
  }
}

TEST_F(DemoRunTest, EveryTaskHasAnOutcomeAndNoneIsLost) {
  const json& tasks = report()["tasks"];
  // 6 tasks a second for 30 s.
  EXPECT_GE(tasks.size(), 170u);
  EXPECT_LE(tasks.size(), 181u);
  std::set<std::string> ids;
  for (const json& t : tasks) {
    ids.insert(t["id"].get<std::string>());
    EXPECT_THAT(t["status"].get<std::string>(),
                ::testing::AnyOf("succeeded", "succeeded_after_retry", "fallback", "degraded"))
        << t.dump();
  }
  EXPECT_EQ(ids.size(), tasks.size());
  // Every task submitted has its outcome in the report: none was still waiting at the end.
  EXPECT_EQ(report()["totals"]["submitted"].get<std::size_t>(), tasks.size());
  EXPECT_EQ(report()["totals"]["failed"], 0);
}

TEST_F(DemoRunTest, TheChaosWasInjectedAndHandled) {
  for (const json& c : report()["chaos"]) EXPECT_FALSE(c.contains("error")) << c.dump();
  EXPECT_EQ(report()["chaos"].size(), 12u);
  const json& outcomes = report()["outcomes"];
  // Rate limits and the crash are retried; the hang and the outages fall back; the hard-down
  // agent with its generalist out too gets degraded answers.
  EXPECT_GT(outcomes.value("succeeded", 0), 100);
  EXPECT_GT(outcomes.value("succeeded_after_retry", 0), 0);
  EXPECT_GT(outcomes.value("fallback", 0), 0);
  EXPECT_GT(outcomes.value("degraded", 0), 0);
  EXPECT_GT(report()["totals"]["retries"].get<int>(), 0);
  // The hung agent's and the hard-down agent's circuits opened and closed again.
  EXPECT_THAT(
      agents_whose_circuit_went("open"),
      ::testing::IsSupersetOf({"ollama-integration-specialist", "infrastructure-devops-manager"}));
  EXPECT_THAT(
      agents_whose_circuit_went("closed"),
      ::testing::IsSupersetOf({"ollama-integration-specialist", "infrastructure-devops-manager"}));
  // The last sample: every agent healthy again, and the circuits of those that failed closed
  // (a circuit that went half-open closes on its next successful calls).
  const json& last = report()["samples"].back()["agents"];
  ASSERT_EQ(last.size(), 8u);
  for (const auto& [name, state] : last.items()) {
    EXPECT_EQ(state["health"], "healthy") << name;
    EXPECT_THAT(state["circuit"].get<std::string>(), ::testing::AnyOf("closed", "half_open"))
        << name;
  }
  EXPECT_EQ(last["ollama-integration-specialist"]["circuit"], "closed");
  EXPECT_EQ(last["infrastructure-devops-manager"]["circuit"], "closed");
}

TEST_F(DemoRunTest, CrashedLeakingAndUnhealthyAgentsWereRestartedForTheRightReason) {
  std::map<std::string, std::string> reason;
  for (const json& r : report()["restarts"]) {
    reason[r["agent"].get<std::string>()] = r["reason"].get<std::string>();
  }
  // The crash: the supervisor; the leak: self-healing's graceful restart.
  EXPECT_EQ(reason["senior-frontend-developer"], "crash");
  EXPECT_EQ(reason["code-generation-improver"], "recovery");
  bool memory_healed = false, database_healed = false;
  for (const json& h : report()["healing"]) {
    const std::string detail = h["detail"].get<std::string>();
    memory_healed = memory_healed || (h["agent"] == "code-generation-improver" &&
                                      detail.find("high_memory_usage") != std::string::npos);
    database_healed = database_healed || (h["agent"] == "senior-full-stack-developer" &&
                                          detail.find("database") != std::string::npos);
  }
  EXPECT_TRUE(memory_healed) << report()["healing"].dump();
  // The lost database is mended one of two ways, whichever comes first: a task that meets the
  // database error has self-healing reconnect it, or the failing health check restarts the agent.
  EXPECT_TRUE(database_healed || reason["senior-full-stack-developer"] == "probe")
      << report()["healing"].dump() << report()["restarts"].dump();
}

TEST_F(DemoRunTest, EscalationsOpenedTicketsAndAnIncidentAndTheWebhookGotThem) {
  bool incident = false, ticket = false;
  for (const json& r : report()["records"]) {
    if (r["kind"] == "incident" && r["level"] == "critical") {
      incident = true;
      EXPECT_THAT(r.value("war_room_url", ""),
                  ::testing::StartsWith("https://chat.example.com/war-room/INC-"));
      EXPECT_FALSE(r.value("sla_due", "").empty());
    }
    if (r["kind"] == "ticket") ticket = true;
  }
  EXPECT_TRUE(incident) << report()["records"].dump();
  EXPECT_TRUE(ticket) << report()["records"].dump();
  const json& totals = report()["totals"];
  EXPECT_GT(totals["notifications_received"].get<int>(), 0);
  EXPECT_EQ(totals["notifications_received"].get<double>(),
            totals["notifications_sent"].get<double>());
}

TEST_F(DemoRunTest, TheHtmlReportDrawsItsChartsInChromium) {
  RenderedPage page = render_dom(path("mend-demo-report.html"), 60s);
  ASSERT_TRUE(page.ok) << page.error;
  for (const char* chart : {"outcomes", "agents", "latency"}) {
    ChartState state = chart_state(page.dom, chart);
    EXPECT_TRUE(state.drawn) << chart;
    EXPECT_GT(state.marks, 8) << chart;
  }
  EXPECT_TRUE(render_errors(page.dom).empty()) << render_errors(page.dom);
}

}  // namespace
}  // namespace mend::testing
