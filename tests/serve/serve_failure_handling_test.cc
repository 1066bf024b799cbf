// `mend serve` handling a task's failures: a 503 retried, a 429's Retry-After waited, a thousand
// tasks waiting out their backoff on timers, the circuit opened and closed again, fallback along
// the chain and a degraded answer.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <string>

#include "serve_fixture.h"
#include "serve_test_support.h"

namespace mend::testing {
namespace {

using serve_test_support::outcome_status;
using ::testing::HasSubstr;

TEST_F(ServeTest, A503IsRetriedAndThenAnswered) {
  start_daemon(config_yaml(default_agents()));
  chaos("reviewer", {{"fail_next", {{{"kind", "503"}, {"count", 2}}}}});
  Reply r = submit("reviewer");
  ASSERT_EQ(r.status, 200) << r.text;
  EXPECT_EQ(outcome_status(r), "succeeded_after_retry");
  const json& attempts = r.body["outcome"]["attempts"];
  ASSERT_EQ(attempts.size(), 3u) << r.text;
  EXPECT_EQ(attempts[0]["error_type"], "temporary_unavailable");
  EXPECT_EQ(attempts[0]["decision"], "retry");
  EXPECT_EQ(attempts[1]["decision"], "retry");
  EXPECT_EQ(attempts[2]["succeeded"], true);
  EXPECT_EQ(r.body["outcome"]["answered_by"], "reviewer");
  EXPECT_THAT(metrics(), HasSubstr("mend_retries_total{agent=\"reviewer\"} 2"));
}

TEST_F(ServeTest, A429WaitsItsRetryAfter) {
  start_daemon(config_yaml(default_agents()));
  chaos("reviewer", {{"retry_after", 1.0}, {"fail_next", {{{"kind", "429"}, {"count", 1}}}}});
  const auto started = std::chrono::steady_clock::now();
  Reply r = submit("reviewer");
  const double waited =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  ASSERT_EQ(r.status, 200) << r.text;
  EXPECT_EQ(outcome_status(r), "succeeded_after_retry");
  const json& attempts = r.body["outcome"]["attempts"];
  ASSERT_EQ(attempts.size(), 2u) << r.text;
  EXPECT_EQ(attempts[0]["error_type"], "rate_limit_exceeded");
  // The agent's Retry-After (1 s) replaced the backoff (50 ms x2 for a rate limit), and up to
  // 20 % more was drawn after it (retry_after_jitter): never less than the agent asked.
  const double delay = attempts[0]["delay_seconds"].get<double>();
  EXPECT_GE(delay, 1.0);
  EXPECT_LT(delay, 1.2);
  EXPECT_GE(waited, delay);
}

TEST_F(ServeTest, FiveFailuresOpenTheCircuitAndThreeSuccessesAfterTheTimeoutCloseIt) {
  start_daemon(config_yaml(default_agents(), "fallback_chains: {reviewer: [backup]}\n"));
  // A logic error: never retried, so each task makes exactly one call to the reviewer.
  chaos("reviewer", {{"fail", {{"500", 1.0}}}});
  for (int i = 0; i < 5; ++i) {
    Reply r = submit("reviewer");
    ASSERT_EQ(r.status, 200) << r.text;
    EXPECT_EQ(outcome_status(r), "fallback");
    EXPECT_EQ(r.body["outcome"]["answered_by"], "backup");
  }
  EXPECT_EQ(agent("reviewer")["circuit"]["state"], "open");
  const int calls_when_open = agent_stats("reviewer")["tasks_received"].get<int>();
  EXPECT_EQ(calls_when_open, 5);

  // While open: rejected without reaching the agent.
  for (int i = 0; i < 3; ++i) {
    Reply r = submit("reviewer");
    ASSERT_EQ(r.status, 200) << r.text;
    EXPECT_EQ(r.body["outcome"]["answered_by"], "backup");
    ASSERT_FALSE(r.body["outcome"]["skipped"].empty()) << r.text;
    EXPECT_EQ(r.body["outcome"]["skipped"][0]["agent"], "reviewer");
    EXPECT_EQ(r.body["outcome"]["skipped"][0]["reason"], "circuit_open");
  }
  EXPECT_EQ(agent_stats("reviewer")["tasks_received"].get<int>(), calls_when_open);

  // The agent recovers; after the recovery timeout (1 s) a probe goes through, and three
  // successes close the circuit.
  chaos("reviewer", {{"fail", json::object()}});
  wait_until([&] { return agent("reviewer")["circuit"].value("probe_in_seconds", 0.0) <= 0.0; }, 5s,
             "the recovery timeout");
  for (int i = 0; i < 3; ++i) {
    Reply r = submit("reviewer");
    ASSERT_EQ(r.status, 200) << r.text;
    EXPECT_EQ(outcome_status(r), "succeeded") << r.text;
    EXPECT_EQ(agent("reviewer")["circuit"]["state"], i < 2 ? "half_open" : "closed");
  }
  const std::string m = metrics();
  EXPECT_THAT(m, HasSubstr("mend_circuit_transitions_total{agent=\"reviewer\",to=\"open\"} 1"));
  EXPECT_THAT(m, HasSubstr("mend_circuit_transitions_total{agent=\"reviewer\",to=\"closed\"} 1"));
  // The log says why, each time.
  EXPECT_THAT(log(), HasSubstr("warning circuit of reviewer closed -> open: 5 failures"));
  EXPECT_THAT(log(), HasSubstr("circuit of reviewer open -> half_open: recovery timeout elapsed"));
  EXPECT_THAT(log(), HasSubstr("circuit of reviewer half_open -> closed: 3 half-open probes"));
}

TEST_F(ServeTest, ATaskFallsBackAlongItsChainAndDegradesWhenEveryAgentFails) {
  start_daemon(config_yaml(default_agents(), "fallback_chains: {reviewer: [backup]}\n"));
  chaos("reviewer", {{"fail", {{"500", 1.0}}}});
  Reply r = submit("reviewer");
  ASSERT_EQ(r.status, 200) << r.text;
  EXPECT_EQ(outcome_status(r), "fallback");
  EXPECT_EQ(r.body["outcome"]["answered_by"], "backup");

  chaos("backup", {{"fail", {{"500", 1.0}}}});
  chaos("generalist", {{"fail", {{"500", 1.0}}}});
  r = submit("reviewer");
  ASSERT_EQ(r.status, 200) << r.text;
  const json& outcome = r.body["outcome"];
  EXPECT_EQ(outcome["status"], "degraded");
  EXPECT_EQ(outcome["answered_by"], "degraded_service");
  EXPECT_EQ(outcome["answer"]["status"], "degraded");
  // processing_failed is medium: the team is notified and a ticket opened.
  ASSERT_TRUE(outcome.contains("escalation")) << r.text;
  EXPECT_EQ(outcome["escalation"]["action"], "notified_and_ticketed");
  EXPECT_THAT(outcome["escalation"]["record"].get<std::string>(), HasSubstr("TKT-"));
  EXPECT_THAT(metrics(), HasSubstr("mend_degraded_answers_total{task_type=\"code_review\"} 1"));
}

// About 4 s: a thousand tasks through a spawned daemon, each waiting out a real backoff (the
// daemon runs on the system clock).
TEST_F(ServeTest, AThousandTasksWaitOutTheirBackoffOnTimersNotThreads) {
  // Every call answers 503; the first retry waits 30 s (+-25 %): a thousand tasks in backoff at
  // once.
  start_daemon(config_yaml(agent_yaml("reviewer",
                                      "    policies: {retry: {backoff: {base: 30s, cap: 60s}}, "
                                      "breaker: {failure_threshold: 100000}}\n")));
  chaos("reviewer", {{"fail", {{"503", 1.0}}}});
  constexpr int kTasks = 1000;
  for (int i = 0; i < kTasks; ++i) {
    Reply accepted = post(
        "/v1/tasks", {{"type", "code_review"}, {"agent", "reviewer"}, {"payload", json::object()}});
    ASSERT_EQ(accepted.status, 202) << accepted.text;
  }
  const std::string retries =
      "mend_retries_total{agent=\"reviewer\"} " + std::to_string(kTasks) + "\n";
  wait_until([&] { return metrics().find(retries) != std::string::npos; }, 20s,
             "every task's first failure and its retry scheduled");
  EXPECT_THAT(metrics(), HasSubstr("mend_tasks_in_flight " + std::to_string(kTasks) + "\n"));
  // Threads: mend's fixed pools, whatever the number of tasks.
  std::ifstream status("/proc/" + std::to_string(daemon_->pid()) + "/status");
  int threads = 0;
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("Threads:", 0) == 0) threads = std::stoi(line.substr(8));
  }
  EXPECT_GT(threads, 0);
  EXPECT_LE(threads, 16);
}

}  // namespace
}  // namespace mend::testing
