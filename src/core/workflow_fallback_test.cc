// The workflow's fallback: along the chain past agents it skips (open circuit, unhealthy,
// full), to the degraded service when every agent fails, and the escalation that follows.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "mend/core/workflow.h"
#include "test_env.h"
#include "workflow_test_support.h"

namespace mend {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::secs;
using workflow_test_support::typed;
using workflow_test_support::WorkflowTest;

TEST_F(WorkflowTest, ExhaustedRetriesFallBackAlongTheDefaultChainAndTicket) {
  invoker.fail_always("senior-backend-developer", Error::http(503, "overloaded"));
  Outcome out = make().run(task(), invoker, &ops);
  EXPECT_EQ(out.status, OutcomeStatus::fallback);
  EXPECT_EQ(out.answered_by, "senior-full-stack-developer");  // the chain's first
  // 1 call + 3 retries on the primary, then the fallback.
  EXPECT_THAT(invoker.calls,
              ElementsAre("senior-backend-developer#0/0", "senior-backend-developer#0/1",
                          "senior-backend-developer#0/2", "senior-backend-developer#0/3",
                          "senior-full-stack-developer#0/0"));
  EXPECT_EQ(out.attempts[3].decision, "fallback");
  EXPECT_THAT(t.sleeper.sleeps(), ElementsAre(secs(1), secs(2), secs(4)));
  ASSERT_EQ(sink.requests.size(), 1u);
  EXPECT_EQ(sink.requests[0].level, Severity::medium);
  EXPECT_EQ(sink.requests[0].labels.at("agent"), "senior-backend-developer");
  EXPECT_EQ(sink.requests[0].labels.at("error_type"), "temporary_unavailable");
  ASSERT_TRUE(out.escalation.has_value());
  EXPECT_EQ(out.escalation->action, "notified_and_ticketed");
  EXPECT_EQ(out.escalation->channel, "engineering");
  EXPECT_EQ(out.escalation->sla, std::chrono::hours(24));
}

// A task that skips an agent whose circuit its failures opened is that outage still going on: it
// escalates with the same labels (the same record), though it called nobody.
TEST_F(WorkflowTest, ATaskThatSkipsAnOpenCircuitEscalatesAsTheOutageThatOpenedIt) {
  for (const std::string& name : agents.names()) {
    invoker.fail_always(name, typed(ErrorType::external_service_down));
  }
  Workflow wf = make();
  for (int i = 0; i < 5; ++i) wf.run(task("t" + std::to_string(i)), invoker, &ops);
  ASSERT_EQ(agents.find("senior-backend-developer")->breaker.state(), CircuitState::open);
  ASSERT_FALSE(sink.requests.empty());
  const EscalationRequest failing = sink.requests.back();
  sink.requests.clear();
  invoker.calls.clear();

  Outcome out = wf.run(task("t5"), invoker, &ops);
  EXPECT_EQ(out.status, OutcomeStatus::degraded);
  EXPECT_TRUE(invoker.calls.empty()) << "every circuit is open: nobody was called";
  ASSERT_EQ(sink.requests.size(), 1u) << "a degraded answer is an occurrence, not silence";
  EXPECT_EQ(sink.requests[0].labels, failing.labels);
  EXPECT_EQ(sink.requests[0].level, failing.level);
  EXPECT_THAT(sink.requests[0].error.message, HasSubstr("skipped (circuit_open)"));
}

// Retries go to an agent still able to serve: one marked unhealthy while a task waited to retry it
// (its probes said so) is left for the next agent of the chain.
TEST_F(WorkflowTest, ARetryIsNotSentToAnAgentMarkedUnhealthyDuringItsBackoff) {
  class FailingThenMarkedUnhealthy final : public AgentInvoker {
   public:
    explicit FailingThenMarkedUnhealthy(AgentRegistry& agents) : agents_(agents) {}
    Result<std::string> invoke(const AgentInfo& agent, int, const Task&, int attempt) override {
      calls.push_back(agent.name + "/" + std::to_string(attempt));
      if (agent.name != "senior-backend-developer") return std::string(R"({"ok":true})");
      agents_.set_health(agent.name, HealthState::unhealthy);  // a probe, during the backoff
      return Error::http(503, "overloaded");
    }
    std::vector<std::string> calls;

   private:
    AgentRegistry& agents_;
  } invoker_marking(agents);
  Outcome out = make().run(task(), invoker_marking, &ops);
  EXPECT_EQ(out.status, OutcomeStatus::fallback);
  EXPECT_THAT(invoker_marking.calls,
              ElementsAre("senior-backend-developer/0", "senior-full-stack-developer/0"));
  ASSERT_GE(out.attempts.size(), 1u);
  EXPECT_EQ(out.attempts[0].decision, "unhealthy");
  ASSERT_TRUE(out.error.has_value());
  EXPECT_EQ(out.error->stop, StopReason::agent_unhealthy);
}

TEST_F(WorkflowTest, WhenEveryAgentFailsTheDegradedServiceAnswers) {
  for (const auto& name : agents.names()) {
    invoker.fail_always(name, typed(ErrorType::processing_failed));
  }
  Outcome out = make().run(task(), invoker, &ops);
  EXPECT_EQ(out.status, OutcomeStatus::degraded);
  EXPECT_EQ(out.answered_by, "degraded_service");
  EXPECT_THAT(out.answer, HasSubstr("\"syntax_valid\":true"));
  // primary, chain (full-stack, ai-engineer, coordinator): each once, no retries.
  EXPECT_EQ(invoker.calls.size(), 4u);
  ASSERT_EQ(sink.requests.size(), 1u);
}

TEST_F(WorkflowTest, WithoutDegradedServiceTheTaskFailsWithTheLastError) {
  for (const auto& name : agents.names()) {
    invoker.fail_always(name, typed(ErrorType::processing_failed, "bad " + name));
  }
  Outcome out = make(/*with_degraded=*/false).run(task(), invoker, &ops);
  EXPECT_EQ(out.status, OutcomeStatus::failed);
  ASSERT_TRUE(out.error.has_value());
  EXPECT_EQ(out.error->message, "bad agentzero-coordinator");
  EXPECT_FALSE(out.answered());
}

TEST_F(WorkflowTest, TheMostSevereErrorDecidesTheLevelAndTheAgent) {
  invoker.script("senior-backend-developer", {typed(ErrorType::validation_failed)});
  invoker.script("senior-full-stack-developer",
                 {Error::classified_as(ErrorType::security_error, Severity::critical, "leak")});
  Outcome out = make().run(task(), invoker, &ops);
  EXPECT_EQ(out.answered_by, "senior-ai-engineer");
  ASSERT_EQ(sink.requests.size(), 1u);
  EXPECT_EQ(sink.requests[0].level, Severity::critical);
  EXPECT_EQ(sink.requests[0].agent, "senior-full-stack-developer");
  EXPECT_EQ(out.escalation->action, "critical_incident");
}

TEST_F(WorkflowTest, FullAgentsAreSkippedForCapacity) {
  AgentRegistry limited;
  ASSERT_TRUE(limited.add({.name = "a", .max_concurrent = 1}).ok());
  ASSERT_TRUE(limited.add({.name = "g", .generalist = true}).ok());
  ASSERT_TRUE(limited.try_reserve("a"));  // another task holds its only slot
  Workflow wf(limited, {}, t.env());
  Task k = task();
  k.agent = "a";
  Outcome out = wf.run(k, invoker);
  ASSERT_EQ(out.skipped.size(), 1u);
  EXPECT_EQ(out.skipped[0].reason, SkipReason::no_capacity);
  EXPECT_EQ(out.answered_by, "g");
  limited.release("a");
  EXPECT_EQ(limited.find("a")->in_flight.load(), 0);
}

}  // namespace
}  // namespace mend
