// `mend serve` supervising and healing its agents: probes (readiness, liveness, the default
// startup), restarts after a crash, crash loops escalated, memory limits, and self-healing.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <string>

#include "mend_test/ports.h"
#include "serve_fixture.h"
#include "serve_test_support.h"

namespace mend::testing {
namespace {

using serve_test_support::outcome_status;
using ::testing::HasSubstr;

// A URL agent (mend does not start it) takes traffic before any probe has answered; the log must
// not present that as a fact. Its readiness probes then fail, and the log says so.
TEST_F(ServeTest, AUrlAgentIsHealthyByAssumptionUntilItsProbesAnswerAndTheLogSaysWhich) {
  RefusingPort nobody;
  start_daemon_without_waiting(
      config_yaml("  - name: outside\n    url: " + nobody.url() +
                  "\n    capabilities: [code_review]\n"
                  "    probes:\n      readiness: {period: 100ms, failure_threshold: 2}\n"));
  ASSERT_FALSE(HasFatalFailure());
  wait_until(
      [&] {
        return log().find("agent outside is unhealthy: no replica is ready") != std::string::npos;
      },
      10s, "the failed probes to be logged");
  const std::string text = log();
  EXPECT_THAT(text, HasSubstr("agent outside is healthy (assumed: mend does not start it, and no "
                              "probe has answered yet)"));
  EXPECT_THAT(text, HasSubstr("agent outside: not ready: "));
  EXPECT_LT(text.find("is healthy (assumed"), text.find("agent outside: not ready: "));
  EXPECT_LT(text.find("agent outside: not ready: "),
            text.find("is unhealthy: no replica is ready"));
}

TEST_F(ServeTest, AKilledAgentIsRestartedBecomesReadyAndServesAgain) {
  start_daemon(config_yaml(default_agents()));
  const int old_pid = agent("reviewer")["replicas"][0]["pid"].get<int>();
  ASSERT_GT(old_pid, 0);
  ASSERT_EQ(::kill(old_pid, SIGKILL), 0);
  wait_until_restarted("reviewer", old_pid);
  Reply r = submit("reviewer");
  ASSERT_EQ(r.status, 200) << r.text;
  EXPECT_EQ(outcome_status(r), "succeeded") << r.text << "\ndaemon log:\n" << log();
  EXPECT_EQ(r.body["outcome"]["answered_by"], "reviewer");
  EXPECT_THAT(metrics(),
              HasSubstr("mend_agent_restarts_total{agent=\"reviewer\",reason=\"crash\"} 1"));
  EXPECT_EQ(agent("reviewer")["counters"]["restarts"], 1);
}

TEST_F(ServeTest, ADatabaseErrorIsHealedThroughTheAgentsHookAndTheTaskAnswered) {
  start_daemon(config_yaml(default_agents()));
  chaos("reviewer", {{"database_down", true}});
  Reply r = submit("reviewer");
  ASSERT_EQ(r.status, 200) << r.text;
  const json& outcome = r.body["outcome"];
  EXPECT_EQ(outcome["status"], "succeeded_after_retry") << r.text;
  EXPECT_EQ(outcome["answered_by"], "reviewer");
  ASSERT_EQ(outcome["healing"].size(), 1u) << r.text;
  EXPECT_EQ(outcome["healing"][0]["issue"], "database_connection_lost");
  EXPECT_EQ(outcome["healing"][0]["recovered"], true);
  json stats = call("GET", agent_url("reviewer") + "/stats").body;
  EXPECT_EQ(stats["admin_calls"]["reconnect-database"], 1) << stats.dump();
}

TEST_F(ServeTest, AnAgentFailingItsLivenessProbeIsRestartedAndTakesTrafficAgain) {
  // Readiness is slow to give up here, so that liveness acts first (readiness that fails runs
  // self-healing: AnAgentThatTurnsUnhealthyIsHealedAndOnCallGetsARecord).
  start_daemon(config_yaml(agent_yaml("reviewer", "", "code_review",
                                      "      startup: {period: 100ms, failure_threshold: 100}\n"
                                      "      readiness: {period: 200ms, failure_threshold: 100}\n"
                                      "      liveness: {period: 200ms, failure_threshold: 3}\n") +
                           agent_yaml("backup") +
                           agent_yaml("generalist", "    generalist: true\n")));
  const int old_pid = agent("reviewer")["replicas"][0]["pid"].get<int>();
  // /health answers 503 from now on: readiness takes the agent out of traffic, liveness (3
  // failures, every 200 ms) restarts it; the new process starts healthy.
  chaos("reviewer", {{"unhealthy", true}});
  wait_until(
      [&] {
        json replica = agent("reviewer")["replicas"][0];
        return replica["pid"].get<int>() != old_pid && replica["ready"].get<bool>();
      },
      15s, "the reviewer to be restarted by its liveness probe");
  EXPECT_THAT(metrics(),
              HasSubstr("mend_agent_restarts_total{agent=\"reviewer\",reason=\"probe\"} 1"));
  Reply r = submit("reviewer");
  ASSERT_EQ(r.status, 200) << r.text;
  EXPECT_EQ(r.body["outcome"]["answered_by"], "reviewer") << r.text << log();
}

// With the default probes (startup every 10 s), an agent that is not yet listening at its first
// startup probe is probed again within 100 ms (doubling), not a period later: it takes traffic
// about as soon as it listens, after a start and after a restart. Before (issue 15), every start
// and restart left it unready, its tasks degraded, for 10 s.
TEST_F(ServeTest, WithTheDefaultProbesAnAgentIsReadySoonAfterItListensAtStartAndRestart) {
  const std::string defaults =
      "      startup: {period: 10s, failure_threshold: 30}\n"
      "      readiness: {period: 10s}\n"
      "      liveness: {period: 10s}\n";
  const auto started = std::chrono::steady_clock::now();
  start_daemon_without_waiting(config_yaml(agent_yaml("reviewer", "", "code_review", defaults)));
  ASSERT_FALSE(HasFatalFailure());
  wait_until([&] { return get("/readyz").status == 200; }, 20s, "the reviewer to be ready");
  ASSERT_FALSE(HasFatalFailure());
  const auto ready_after_start = std::chrono::steady_clock::now() - started;
  // Half the probe period: the agent starts in well under a second, even under a sanitizer.
  EXPECT_LT(ready_after_start, 5s);

  const int old_pid = agent("reviewer")["replicas"][0]["pid"].get<int>();
  const auto killed = std::chrono::steady_clock::now();
  ASSERT_EQ(::kill(old_pid, SIGKILL), 0);
  wait_until(
      [&] {
        json replica = agent("reviewer")["replicas"][0];
        return replica["pid"].get<int>() != old_pid && replica["ready"].get<bool>();
      },
      20s, "the reviewer to be restarted and ready");
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_LT(std::chrono::steady_clock::now() - killed, 5s);
  std::cout << "[ probes ] ready "
            << std::chrono::duration_cast<std::chrono::milliseconds>(ready_after_start).count()
            << " ms after the start, "
            << std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::steady_clock::now() - killed)
                   .count()
            << " ms after a SIGKILL\n";
  Reply r = submit("reviewer");
  ASSERT_EQ(r.status, 200) << r.text;
  EXPECT_EQ(r.body["outcome"]["answered_by"], "reviewer") << r.text;
}

// An agent whose /health says unhealthy is not just skipped: self-healing runs (a restart, for
// an unresponsive service) and on-call gets a record that says what happened.
TEST_F(ServeTest, AnAgentThatTurnsUnhealthyIsHealedAndOnCallGetsARecord) {
  start_daemon(config_yaml(agent_yaml("reviewer", "", "code_review",
                                      "      startup: {period: 100ms, failure_threshold: 100}\n"
                                      "      readiness: {period: 100ms, failure_threshold: 2}\n"
                                      "      liveness: {period: 60s}\n")));
  ASSERT_FALSE(HasFatalFailure());
  const int old_pid = agent("reviewer")["replicas"][0]["pid"].get<int>();
  chaos("reviewer", {{"unhealthy", true}});
  json record;
  wait_until(
      [&] {
        const Reply records = get("/v1/escalations");  // named: the loop reads into it
        for (const json& r : records.body["records"]) {
          if (r["agent"] == "reviewer") record = r;
        }
        return !record.is_null();
      },
      10s, "a record for the unhealthy reviewer");
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_EQ(record["error_type"], "service_unavailable");
  EXPECT_THAT(record["description"].get<std::string>(), HasSubstr("is unhealthy"));
  EXPECT_THAT(record["description"].get<std::string>(), HasSubstr("self-healing"));
  wait_until_restarted("reviewer", old_pid);  // the restart was self-healing's
  EXPECT_THAT(log(), HasSubstr("agent reviewer is unhealthy ("));
  Reply r = submit("reviewer");
  ASSERT_EQ(r.status, 200) << r.text;
  EXPECT_EQ(r.body["outcome"]["answered_by"], "reviewer") << r.text;
}

TEST_F(ServeTest, AnAgentThatKeepsCrashingIsRestartedWithBackoffAndEscalatedAsAnIncident) {
  const std::string crasher =
      "  - name: crasher\n    command: /bin/sh\n    args: [-c, \"exit 3\"]\n"
      "    capabilities: [nothing]\n";
  start_daemon_without_waiting(config_yaml(
      agent_yaml("reviewer") + crasher, "  intensity_max_restarts: 2\n  intensity_period: 1m\n"));
  wait_until(
      [&] {
        Reply incidents = get("/v1/incidents");
        return incidents.status == 200 && incidents.body["records"].size() == 1;
      },
      15s, "an incident about the crashing agent");
  const json incident = get("/v1/incidents").body["records"][0];
  EXPECT_EQ(incident["agent"], "crasher");
  EXPECT_EQ(incident["level"], "critical");
  EXPECT_THAT(incident["description"].get<std::string>(), HasSubstr("keeps crashing"));
  const json replica = agent("crasher")["replicas"][0];
  EXPECT_GE(replica["restarts"].get<int>(), 2);
  EXPECT_EQ(replica["ready"], false);
  EXPECT_EQ(agent("crasher")["health"], "unhealthy");
  EXPECT_EQ(get("/readyz").status, 503);  // not every agent is ready
  EXPECT_THAT(log(), HasSubstr("exited with status 3"));
}

TEST_F(ServeTest, AnAgentWhosePortWasTakenIsMovedToAnotherPortAndServes) {
  // Its first start finds its port taken (as when another program binds it between mend's choice
  // and the agent's bind) and says so the way Go does; from then on it serves.
  const std::string mark = ::testing::TempDir() + "mend-port-taken-" + std::to_string(::getpid());
  std::remove(mark.c_str());
  const std::string script = "if [ -e " + mark + " ]; then exec " +
                             std::string(kSampleAgentBinary) +
                             " --port {port} --name reviewer; fi; touch " + mark +
                             "; echo 'listen tcp 127.0.0.1:{port}: bind: address already in use' "
                             ">&2; exit 1";
  const std::string reviewer =
      "  - name: reviewer\n    command: /bin/sh\n    args: [-c, \"" + script +
      "\"]\n    capabilities: [code_review]\n    stop_timeout: 2s\n"
      "    probes:\n      startup: {period: 100ms, failure_threshold: 100}\n";
  start_daemon(config_yaml(reviewer));
  ASSERT_FALSE(HasFatalFailure());
  std::remove(mark.c_str());
  const std::string text = log();
  const std::string said = "could not listen on port ";
  const std::size_t at = text.find(said);
  ASSERT_NE(at, std::string::npos) << text;
  const int first_port = std::stoi(text.substr(at + said.size()));
  EXPECT_THAT(text, HasSubstr("(address in use): moved to port "));
  const std::string url = agent("reviewer")["replicas"][0]["url"].get<std::string>();
  EXPECT_EQ(url.find(":" + std::to_string(first_port)), std::string::npos) << url;
  Reply r = submit("reviewer");
  ASSERT_EQ(r.status, 200) << r.text;
  EXPECT_EQ(outcome_status(r), "succeeded") << r.text;
}

TEST_F(ServeTest, AnAgentOverItsMemoryLimitIsHealedByClearingItsCachesAndARestart) {
  start_daemon(config_yaml(agent_yaml("reviewer", "    memory_limit: 4GiB\n")));
  // The limit: what the agent uses now plus 24 MiB (its resident size differs between builds;
  // sanitizers add a lot), applied by a reload that keeps the process.
  const json replica = agent("reviewer")["replicas"][0];
  const int old_pid = replica["pid"].get<int>();
  const std::uint64_t rss = replica["rss_bytes"].get<std::uint64_t>();
  ASSERT_GT(rss, 0u);
  const std::uint64_t limit_kib = rss / 1024 + 24 * 1024;
  write_config(config_yaml(
      agent_yaml("reviewer", "    memory_limit: " + std::to_string(limit_kib) + "KiB\n")));
  daemon_->signal(SIGHUP);
  wait_until(
      [&] {
        return metrics().find("mend_config_reloads_total{result=\"applied\"} 1") !=
               std::string::npos;
      },
      10s, "the reload");
  EXPECT_EQ(agent("reviewer")["replicas"][0]["pid"].get<int>(), old_pid);

  // 48 MiB more: over the limit. high_memory_usage's recovery: clear the caches, restart
  // gracefully, wait until ready.
  chaos("reviewer", {{"memory_growth_kib", 48 * 1024}});
  Reply r = submit("reviewer");
  ASSERT_EQ(r.status, 200) << r.text;
  wait_until(
      [&] {
        return metrics().find(
                   "mend_agent_restarts_total{agent=\"reviewer\",reason=\"recovery\"} 1") !=
               std::string::npos;
      },
      15s, "the memory watch to heal the agent");
  wait_until(
      [&] {
        json now = agent("reviewer")["replicas"][0];
        return now["pid"].get<int>() != old_pid && now["ready"].get<bool>();
      },
      15s, "the restarted agent to be ready");
  const std::string daemon_log = log();
  EXPECT_THAT(daemon_log, HasSubstr("of its memory limit: self-healing"));
  EXPECT_THAT(daemon_log, HasSubstr("restarting reviewer#0 (recovery, graceful)"));
  EXPECT_EQ(outcome_status(submit("reviewer")), "succeeded");
}

}  // namespace
}  // namespace mend::testing
