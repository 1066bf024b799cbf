// A workflow run seen from outside: the step-by-step driver, the events and outcome JSON it
// reports, and runs that end abnormally (interrupted, a throwing invoker, an abandoned run).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

#include "mend/core/workflow.h"
#include "test_env.h"
#include "workflow_test_support.h"

namespace mend {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using workflow_test_support::typed;
using workflow_test_support::WorkflowTest;

TEST_F(WorkflowTest, InterruptedIsNotAnAnswer) {
  Outcome out;
  out.status = OutcomeStatus::interrupted;
  EXPECT_FALSE(out.answered());
  EXPECT_EQ(to_string(OutcomeStatus::interrupted), "interrupted");
}

TEST_F(WorkflowTest, EveryDecisionIsAnEventNamingTheTask) {
  invoker.script("senior-backend-developer", {Error::http(503)});
  invoker.script("senior-backend-developer", {typed(ErrorType::validation_failed)});
  make().run(task("evt"), invoker, &ops);
  std::vector<std::string> kinds;
  for (const Event& e : t.events.events()) {
    EXPECT_EQ(e.task_id, "evt");
    kinds.push_back(std::string(to_string(e.kind)));
  }
  EXPECT_THAT(kinds, ElementsAre("retry_scheduled", "attempt_failed", "fallback_used", "escalated",
                                 "task_finished"));
}

TEST_F(WorkflowTest, OutcomeJsonCarriesAttemptsAndEscalation) {
  invoker.script("senior-backend-developer", {Error::http(503, "say \"hi\"")});
  invoker.script("senior-backend-developer", {typed(ErrorType::validation_failed)});
  Outcome out = make().run(task(), invoker, &ops);
  const std::string text = out.to_json();
  EXPECT_THAT(text, HasSubstr(R"("status":"fallback")"));
  EXPECT_THAT(text, HasSubstr(R"("error_type":"temporary_unavailable")"));
  EXPECT_THAT(text, HasSubstr(R"("message":"say \"hi\"")"));
  EXPECT_THAT(text, HasSubstr(R"("action":"notified_and_ticketed")"));
  EXPECT_THAT(text, HasSubstr(R"("delay_seconds":1)"));
}

TEST_F(WorkflowTest, AStateMachineDriverSeesEachStep) {
  invoker.script("senior-backend-developer", {Error::http(503)});
  Workflow wf = make();
  auto run = wf.start(task(), /*can_heal=*/false);
  std::vector<WorkflowStep::Kind> kinds;
  for (int guard = 0; guard < 20; ++guard) {
    const WorkflowStep& step = run->next();
    kinds.push_back(step.kind);
    if (step.kind == WorkflowStep::Kind::done) break;
    if (step.kind == WorkflowStep::Kind::call) {
      run->provide_call_result(
          invoker.invoke(*step.agent, step.replica, run->task(), step.attempt));
    }
  }
  using K = WorkflowStep::Kind;
  EXPECT_THAT(kinds, ElementsAre(K::call, K::wait, K::call, K::done));
  EXPECT_EQ(run->take_outcome().status, OutcomeStatus::succeeded_after_retry);
}

TEST_F(WorkflowTest, AnInvokerThatThrowsFailsItsCallNotTheRun) {
  class Throwing final : public AgentInvoker {
   public:
    Result<std::string> invoke(const AgentInfo& agent, int, const Task&, int) override {
      if (agent.name == "senior-backend-developer") throw std::runtime_error("socket exploded");
      return std::string("{}");
    }
  } throwing;
  Outcome out = make().run(task(), throwing, &ops);
  EXPECT_EQ(out.status, OutcomeStatus::fallback);
  EXPECT_EQ(out.attempts[0].message, "socket exploded");
  EXPECT_EQ(agents.find("senior-backend-developer")->in_flight.load(), 0);
}

TEST_F(WorkflowTest, AnAbandonedRunGivesBackItsSlotAndPermit) {
  AgentRegistry limited;
  AgentInfo one{.name = "a", .max_concurrent = 1};
  one.breaker.failure_threshold = 1;
  one.breaker.half_open_calls = 1;  // a single probe slot: leaking it would shut the agent out
  ASSERT_TRUE(limited.add(one).ok());
  CircuitBreaker& breaker = limited.find("a")->breaker;
  breaker.on_failure(breaker.try_acquire(t.clock), t.clock);  // open
  t.clock.advance(std::chrono::seconds(60));                  // a probe may go through
  Workflow wf(limited, {}, t.env());
  Task k = task();
  k.agent = "a";
  {
    auto run = wf.start(k, false);
    ASSERT_EQ(run->next().kind, WorkflowStep::Kind::call);  // the half-open probe
    EXPECT_EQ(breaker.state(), CircuitState::half_open);
    EXPECT_EQ(limited.find("a")->in_flight.load(), 1);
  }  // the driver gave up mid-call
  EXPECT_EQ(limited.find("a")->in_flight.load(), 0);
  Outcome out = wf.run(k, invoker);  // the probe slot is free again
  EXPECT_EQ(out.status, OutcomeStatus::succeeded);
  EXPECT_TRUE(out.skipped.empty());
}

}  // namespace
}  // namespace mend
