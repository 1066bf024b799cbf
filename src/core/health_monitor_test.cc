#include "mend/core/health_monitor.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>

namespace mend {
namespace {

using std::chrono::seconds;
using ::testing::ElementsAre;

// Agents' health answers, set by the test; admin actions recorded, and a restart cures memory.
class ScriptedOperations final : public AgentOperations {
 public:
  ProbeResult probe(const std::string& agent) override {
    ++probes[agent];
    return answers[agent];
  }
  Result<void> clear_caches(const std::string& a) override { return log("clear_caches " + a); }
  Result<void> reset_connection_pools(const std::string& a) override {
    return log("reset_connection_pools " + a);
  }
  Result<void> increase_connection_limits(const std::string& a) override {
    return log("increase_connection_limits " + a);
  }
  Result<void> reconnect_database(const std::string& a) override {
    return log("reconnect_database " + a);
  }
  Result<void> restart(const std::string& a, bool graceful) override {
    if (cure_on_restart) answers[a] = healthy();
    return log(std::string(graceful ? "restart " : "force_restart ") + a);
  }
  Result<void> wait_until_ready(const std::string& a, Duration) override {
    return log("wait_until_ready " + a);
  }

  static ProbeResult healthy() { return {.answered = true, .reported = HealthState::healthy}; }
  static ProbeResult silent() { return {.answered = false, .detail = "connection refused"}; }

  std::map<std::string, ProbeResult> answers;
  std::map<std::string, int> probes;
  std::vector<std::string> calls;
  bool cure_on_restart = false;

 private:
  Result<void> log(std::string what) {
    calls.push_back(std::move(what));
    return {};
  }
};

class CountingSink final : public EscalationSink {
 public:
  Result<EscalationTaken> escalate(const EscalationRequest& r) override {
    requests.push_back(r);
    return EscalationTaken{.level = r.level, .action = "high_priority_alert"};
  }
  std::vector<EscalationRequest> requests;
};

class HealthMonitorTest : public ::testing::Test {
 protected:
  HealthMonitorTest() {
    EXPECT_TRUE(agents.add({.name = "a"}).ok());
    EXPECT_TRUE(agents.add({.name = "b"}).ok());
    ops.answers["a"] = ScriptedOperations::healthy();
    ops.answers["b"] = ScriptedOperations::healthy();
  }
  ManualClock clock;
  AgentRegistry agents;
  ScriptedOperations ops;
  CountingSink alerts;
};

TEST_F(HealthMonitorTest, ThreeFailedProbesMakeAnAgentUnhealthyAndAlertOnce) {
  HealthMonitor monitor(agents, {}, nullptr, &alerts);
  ASSERT_EQ(monitor.check_due(ops, clock.now()).size(), 2u);  // unknown -> healthy, both
  EXPECT_EQ(agents.find("a")->health.load(), HealthState::healthy);
  ops.answers["a"] = ScriptedOperations::silent();
  std::vector<HealthState> seen;
  for (int i = 1; i <= 5; ++i) {
    clock.advance(seconds(10));  // k8s period
    monitor.check_due(ops, clock.now());
    seen.push_back(agents.find("a")->health.load());
  }
  // 1 failure: flaky (degraded); 3 in a row: unhealthy.
  EXPECT_THAT(seen,
              ElementsAre(HealthState::degraded, HealthState::degraded, HealthState::unhealthy,
                          HealthState::unhealthy, HealthState::unhealthy));
  ASSERT_EQ(alerts.requests.size(), 1u);
  EXPECT_EQ(alerts.requests[0].agent, "a");
  EXPECT_EQ(alerts.requests[0].level, Severity::high);
  EXPECT_EQ(alerts.requests[0].labels.at("task_type"), "health_check");
  EXPECT_EQ(agents.unavailable_reason("a"), SkipReason::unhealthy);
  EXPECT_FALSE(agents.unavailable_reason("b").has_value());
  // One success brings it back (k8s success threshold 1).
  ops.answers["a"] = ScriptedOperations::healthy();
  clock.advance(seconds(10));
  auto back = monitor.check_due(ops, clock.now());
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0].from, HealthState::unhealthy);
  EXPECT_EQ(back[0].to, HealthState::healthy);
}

TEST_F(HealthMonitorTest, ProbesFollowThePeriod) {
  HealthMonitor monitor(agents, {.probe = {.period = seconds(30)}});
  monitor.check_due(ops, clock.now());
  clock.advance(seconds(29));
  monitor.check_due(ops, clock.now());
  EXPECT_EQ(ops.probes["a"], 1);
  EXPECT_EQ(monitor.next_due(), clock.now() + seconds(1));
  clock.advance(seconds(1));
  monitor.check_due(ops, clock.now());
  EXPECT_EQ(ops.probes["a"], 2);
}

TEST_F(HealthMonitorTest, ADegradedAgentIsHealedFromWhatItsHealthAnswerShows) {
  SelfHealer healer;
  HealthMonitor monitor(agents, {}, &healer, &alerts);
  ops.cure_on_restart = true;
  ops.answers["a"] = {
      .answered = true, .reported = HealthState::degraded, .metrics = {{"memory_percent", 96.0}}};
  auto transitions = monitor.check_due(ops, clock.now());
  ASSERT_FALSE(transitions.empty());
  const HealthTransition& t = transitions[0];
  EXPECT_EQ(t.agent, "a");
  ASSERT_TRUE(t.healing.has_value());
  EXPECT_EQ(t.healing->issue, "high_memory_usage");
  EXPECT_TRUE(t.healing->recovered);
  EXPECT_EQ(t.to, HealthState::healthy);
  EXPECT_THAT(ops.calls, ElementsAre("clear_caches a", "restart a", "wait_until_ready a"));
  EXPECT_EQ(agents.find("a")->health.load(), HealthState::healthy);
  EXPECT_TRUE(alerts.requests.empty());
}

TEST_F(HealthMonitorTest, AnAgentHealingCannotFixIsMarkedUnhealthyAndAlerted) {
  SelfHealer healer;
  HealthMonitor monitor(agents, {.probe = {.failure_threshold = 1}}, &healer, &alerts);
  ops.answers["a"] = {.answered = true, .reported = HealthState::unhealthy, .detail = "stuck"};
  auto transitions = monitor.check_due(ops, clock.now());
  ASSERT_FALSE(transitions.empty());
  EXPECT_EQ(transitions[0].to, HealthState::unhealthy);
  ASSERT_TRUE(transitions[0].healing.has_value());
  EXPECT_EQ(transitions[0].healing->issue, "service_unresponsive");
  EXPECT_FALSE(transitions[0].healing->recovered);
  ASSERT_TRUE(transitions[0].alert.has_value());
  EXPECT_EQ(agents.find("a")->health.load(), HealthState::unhealthy);
  ASSERT_EQ(alerts.requests.size(), 1u);
}

TEST_F(HealthMonitorTest, BadProbeOptionsAreRejected) {
  EXPECT_THROW(HealthMonitor(agents, {.probe = {.failure_threshold = 0}}), std::invalid_argument);
}

}  // namespace
}  // namespace mend
