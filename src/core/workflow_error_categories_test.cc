// How the workflow treats each category of error: logic errors fall back without retry,
// resource errors move to another replica, system errors heal the agent, external errors open
// its breaker, an invalid task fails at once, an unresolved low one is raised to medium.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "mend/core/workflow.h"
#include "test_env.h"
#include "workflow_test_support.h"

namespace mend {
namespace {

using ::testing::ElementsAre;
using testing::secs;
using workflow_test_support::typed;
using workflow_test_support::WorkflowTest;

TEST_F(WorkflowTest, UnresolvedLowSeverityIsRaisedToMedium) {
  invoker.fail_always("senior-backend-developer", Error::http(429, "slow down"));
  Outcome out = make().run(task(), invoker, &ops);
  EXPECT_EQ(out.status, OutcomeStatus::fallback);
  EXPECT_EQ(out.attempts[0].severity, Severity::low);
  // Rate limits wait twice as long (error_scaled): 2, 4, 8 s.
  EXPECT_THAT(t.sleeper.sleeps(), ElementsAre(secs(2), secs(4), secs(8)));
  ASSERT_EQ(sink.requests.size(), 1u);
  EXPECT_EQ(sink.requests[0].level, Severity::medium);
}

TEST_F(WorkflowTest, LogicErrorsFallBackWithoutRetry) {
  invoker.script("senior-backend-developer", {typed(ErrorType::validation_failed)});
  Outcome out = make().run(task(), invoker, &ops);
  EXPECT_EQ(out.status, OutcomeStatus::fallback);
  EXPECT_THAT(invoker.calls,
              ElementsAre("senior-backend-developer#0/0", "senior-full-stack-developer#0/0"));
  EXPECT_TRUE(t.sleeper.sleeps().empty());
  EXPECT_EQ(out.attempts[0].decision, "fallback");
  ASSERT_EQ(sink.requests.size(), 1u);
  EXPECT_EQ(sink.requests[0].level, Severity::medium);  // low, unresolved -> medium
}

TEST_F(WorkflowTest, ResourceErrorsMoveToAnotherReplicaThenEscalateHigh) {
  AgentRegistry replicated;
  ASSERT_TRUE(replicated.add({.name = "analyst", .endpoints = {"http://a", "http://b"}}).ok());
  WorkflowOptions o;
  o.escalations = &sink;
  Workflow wf(replicated, o, t.env());
  invoker.script("analyst", {typed(ErrorType::memory_exhausted)}, /*replica=*/0);
  Task k = task();
  k.agent = "analyst";
  Outcome out = wf.run(k, invoker);
  EXPECT_THAT(invoker.calls, ElementsAre("analyst#0/0", "analyst#1/0"));
  EXPECT_EQ(out.attempts[0].decision, "next_replica");
  EXPECT_EQ(out.status, OutcomeStatus::succeeded_after_retry);
  ASSERT_EQ(sink.requests.size(), 1u);  // high escalates even when resolved
  EXPECT_EQ(sink.requests[0].level, Severity::high);
  EXPECT_EQ(out.escalation->action, "high_priority_alert");
}

TEST_F(WorkflowTest, SystemErrorsHealTheAgentThenRetryIt) {
  invoker.script("senior-backend-developer", {typed(ErrorType::database_error)});
  Outcome out = make().run(task(), invoker, &ops);
  EXPECT_EQ(out.status, OutcomeStatus::succeeded_after_retry);
  EXPECT_EQ(out.answered_by, "senior-backend-developer");
  ASSERT_EQ(out.healing.size(), 1u);
  EXPECT_EQ(out.healing[0].issue, "database_connection_lost");
  EXPECT_TRUE(out.healing[0].recovered);
  EXPECT_THAT(ops.calls, ElementsAre("reconnect_database senior-backend-developer",
                                     "probe senior-backend-developer"));
  EXPECT_EQ(out.attempts[0].decision, "self_healing");
  ASSERT_EQ(sink.requests.size(), 1u);
  EXPECT_EQ(sink.requests[0].level, Severity::high);
}

TEST_F(WorkflowTest, FailedHealingMarksTheAgentUnhealthyAndFailsOver) {
  ops.health = HealthState::unhealthy;
  invoker.script("senior-backend-developer", {typed(ErrorType::service_unavailable)});
  Workflow wf = make();
  Outcome out = wf.run(task(), invoker, &ops);
  EXPECT_EQ(out.status, OutcomeStatus::fallback);
  ASSERT_EQ(out.healing.size(), 1u);
  EXPECT_FALSE(out.healing[0].recovered);
  EXPECT_TRUE(out.healing[0].escalate);
  EXPECT_EQ(agents.find("senior-backend-developer")->health.load(), HealthState::unhealthy);
  // The next task skips it, and says why.
  Outcome next = wf.run(task("t2"), invoker, &ops);
  ASSERT_EQ(next.skipped.size(), 1u);
  EXPECT_EQ(next.skipped[0].reason, SkipReason::unhealthy);
  EXPECT_EQ(next.status, OutcomeStatus::fallback);
}

TEST_F(WorkflowTest, WithoutOperationsSystemErrorsFallBackAndLeaveHealthAlone) {
  invoker.script("senior-backend-developer", {typed(ErrorType::service_unavailable)});
  Outcome out = make().run(task(), invoker, /*operations=*/nullptr);
  EXPECT_EQ(out.status, OutcomeStatus::fallback);
  EXPECT_TRUE(out.healing.empty());
  EXPECT_NE(agents.find("senior-backend-developer")->health.load(), HealthState::unhealthy);
}

TEST_F(WorkflowTest, ExternalErrorsOpenTheBreakerAndLaterTasksSkipTheAgent) {
  invoker.fail_always("senior-backend-developer", typed(ErrorType::external_service_down));
  Workflow wf = make();
  for (int i = 0; i < 5; ++i) {
    Outcome out = wf.run(task("t" + std::to_string(i)), invoker, &ops);
    EXPECT_EQ(out.status, OutcomeStatus::fallback);
    EXPECT_EQ(out.attempts.front().decision, "fallback");  // external: no retry
  }
  EXPECT_EQ(agents.find("senior-backend-developer")->breaker.state(), CircuitState::open);
  Outcome out = wf.run(task("t5"), invoker, &ops);
  ASSERT_EQ(out.skipped.size(), 1u);
  EXPECT_EQ(out.skipped[0].reason, SkipReason::circuit_open);
  EXPECT_EQ(out.answered_by, "senior-full-stack-developer");
  // After the specification's 60 s recovery timeout, a probe goes through again.
  t.clock.advance(std::chrono::seconds(60));
  invoker.calls.clear();
  wf.run(task("t6"), invoker, &ops);
  EXPECT_EQ(invoker.calls.front(), "senior-backend-developer#0/0");
}

TEST_F(WorkflowTest, AnInvalidTaskFailsAtOnceWithoutFallbackOrEscalation) {
  Error invalid = Error::classified_as(ErrorType::validation_failed, Severity::low, "not JSON");
  invalid.kind = std::string(kInvalidTaskKind);
  invoker.fail_always("senior-backend-developer", invalid);
  Outcome out = make().run(task(), invoker, &ops);
  EXPECT_EQ(out.status, OutcomeStatus::failed);
  EXPECT_EQ(invoker.calls.size(), 1u);
  EXPECT_EQ(out.attempts[0].decision, "invalid_task");
  EXPECT_FALSE(out.escalation.has_value());
  EXPECT_TRUE(sink.requests.empty());
  EXPECT_EQ(agents.find("senior-backend-developer")->breaker.snapshot(t.clock).failure_count, 0);
}

}  // namespace
}  // namespace mend
