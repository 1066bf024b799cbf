// The workflow's hedged calls (WorkflowStep::hedge_after, WorkflowRun::start_hedge): which call
// steps may be hedged, where the hedge goes, what the retry budget says, and how the two calls'
// ends reach the balancer, the budget, the latency window, the attempt log and the events. Driven
// by hand on a manual clock and a seeded random source, as the async driver would drive it.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "mend/core/retry_budget.h"
#include "mend/core/workflow.h"
#include "test_env.h"

namespace mend {
namespace {

using std::chrono::milliseconds;
using CallSlot = WorkflowRun::CallSlot;

HedgingOptions fixed_hedging(Duration delay) {
  HedgingOptions h;
  h.delay = delay;
  h.task_types = {"code_review"};
  return h;
}

class WorkflowHedgingTest : public ::testing::Test {
 protected:
  WorkflowHedgingTest() {
    t.random = std::make_unique<SeededRandom>(17);
    add({.name = "reviewer",
         .endpoints = {"http://r0", "http://r1", "http://r2"},
         .hedging = fixed_hedging(milliseconds(50))});
    add({.name = "single", .endpoints = {"http://s0"}, .hedging = fixed_hedging(milliseconds(50))});
    add({.name = "plain", .endpoints = {"http://p0", "http://p1"}});
    HedgingOptions p95;
    p95.task_types = {"*"};
    add({.name = "observed", .endpoints = {"http://o0", "http://o1"}, .hedging = p95});
  }
  void add(AgentInfo info) { ASSERT_TRUE(agents.add(std::move(info)).ok()); }
  Workflow make() {
    WorkflowOptions o;
    o.degraded = &degraded;
    if (budget) o.agent_retry["reviewer"].budget = budget;
    return Workflow(agents, o, t.env());
  }
  static Task task(std::string agent, std::string type = "code_review", std::string id = "t1") {
    Task k;
    k.id = std::move(id);
    k.type = std::move(type);
    k.agent = std::move(agent);
    return k;
  }
  // The hedged events' details, in order.
  std::vector<std::string> hedge_events() const {
    std::vector<std::string> out;
    for (const Event& e : t.events.events()) {
      if (e.kind == EventKind::hedged) out.push_back(e.detail);
    }
    return out;
  }
  ReplicaSnapshot replica(const std::string& agent, int r) {
    return agents.find(agent)->balancer.snapshot(t.clock.now())[static_cast<std::size_t>(r)];
  }
  int outstanding(const std::string& agent) {
    int n = 0;
    for (const ReplicaSnapshot& s : agents.find(agent)->balancer.snapshot(t.clock.now())) {
      n += s.outstanding;
    }
    return n;
  }

  testing::TestEnv t;
  AgentRegistry agents;
  DegradedService degraded;
  std::shared_ptr<RetryBudget> budget;
};

TEST_F(WorkflowHedgingTest, OnlyHedgedTaskTypesOfAgentsWithTwoReplicasHaveAHedgeDelay) {
  Workflow wf = make();
  auto hedge_after = [&](Task k) {
    auto run = wf.start(std::move(k), false);
    const WorkflowStep& step = run->next();
    EXPECT_EQ(step.kind, WorkflowStep::Kind::call);
    return step.hedge_after;
  };
  EXPECT_EQ(hedge_after(task("reviewer")), std::optional<Duration>(milliseconds(50)));
  EXPECT_EQ(hedge_after(task("reviewer", "deployment")), std::nullopt);  // not idempotent
  EXPECT_EQ(hedge_after(task("single")), std::nullopt);                  // nowhere else to go
  EXPECT_EQ(hedge_after(task("plain")), std::nullopt);                   // no hedging policy
  // The observed p95 is not trusted yet: max_delay (2 s).
  EXPECT_EQ(hedge_after(task("observed", "anything")),
            std::optional<Duration>(std::chrono::seconds(2)));
  // A delay that would not come before the call's own time limit: no hedge.
  Task limited = task("reviewer");
  limited.attempt_timeout = milliseconds(50);
  EXPECT_EQ(hedge_after(limited), std::nullopt);
  EXPECT_EQ(outstanding("reviewer"), 0);  // the runs given up gave their calls back
}

TEST_F(WorkflowHedgingTest, TheHedgeGoesToAnotherReplicaThanTheFirstCallOnce) {
  Workflow wf = make();
  for (int i = 0; i < 30; ++i) {
    auto run = wf.start(task("reviewer", "code_review", "t" + std::to_string(i)), false);
    const WorkflowStep& step = run->next();
    ASSERT_TRUE(step.hedge_after);
    const int first = step.replica;
    t.clock.advance(milliseconds(50));
    const int hedge = run->start_hedge();
    ASSERT_GE(hedge, 0);
    ASSERT_LT(hedge, 3);
    EXPECT_NE(hedge, first) << i;
    EXPECT_EQ(run->start_hedge(), -1);  // one hedge per call
    EXPECT_EQ(outstanding("reviewer"), 2);
    run->provide_call_result(std::string("{}"), i % 2 == 0 ? CallSlot::first : CallSlot::hedge);
    ASSERT_EQ(run->next().kind, WorkflowStep::Kind::done);
    EXPECT_EQ(outstanding("reviewer"), 0);
  }
}

TEST_F(WorkflowHedgingTest, TheHedgeAvoidsTheReplicasTheTaskFailedOn) {
  Workflow wf = make();
  auto run = wf.start(task("reviewer"), false);
  const WorkflowStep* step = &run->next();
  const int failed_on = step->replica;
  run->provide_call_result(Error::http(503, "overloaded"));  // retried at once elsewhere
  step = &run->next();
  ASSERT_EQ(step->kind, WorkflowStep::Kind::wait);
  step = &run->next();
  ASSERT_EQ(step->kind, WorkflowStep::Kind::call);
  const int second = step->replica;
  ASSERT_NE(second, failed_on);
  ASSERT_TRUE(step->hedge_after);
  const int hedge = run->start_hedge();
  EXPECT_NE(hedge, failed_on);
  EXPECT_NE(hedge, second);
  EXPECT_EQ(hedge, 3 - failed_on - second);  // the one left
}

TEST_F(WorkflowHedgingTest, TheRetryBudgetPaysForTheHedgeOrRefusesIt) {
  RetryBudgetOptions none;
  none.ratio = 0;
  none.min_retries_per_second = 0;
  budget = std::make_shared<RetryBudget>(none);
  Workflow wf = make();
  auto run = wf.start(task("reviewer"), false);
  ASSERT_TRUE(run->next().hedge_after);
  t.clock.advance(milliseconds(50));
  EXPECT_EQ(run->start_hedge(), -1);
  EXPECT_EQ(outstanding("reviewer"), 1);  // the first call only
  EXPECT_EQ(budget->retries_in_flight(), 0);
  run->provide_call_result(std::string("{}"));
  ASSERT_EQ(run->next().kind, WorkflowStep::Kind::done);
  const Outcome out = run->take_outcome();
  EXPECT_EQ(out.status, OutcomeStatus::succeeded);
  ASSERT_EQ(out.attempts.size(), 1u);
  EXPECT_EQ(out.attempts[0].hedge_replica, -1);
  EXPECT_THAT(hedge_events(), ::testing::ElementsAre("not_sent"));
}

TEST_F(WorkflowHedgingTest, AHedgeIsACallTheAgentsRateLimitCounts) {
  // One call a second, at most one at once: the first call takes it, so the hedge is not sent.
  add({.name = "limited",
       .endpoints = {"http://l0", "http://l1"},
       .rate_limit = RateLimiterOptions{.rate_per_second = 1, .burst = 1},
       .hedging = fixed_hedging(milliseconds(50))});
  budget = std::make_shared<RetryBudget>(RetryBudgetOptions{});
  WorkflowOptions o;
  o.degraded = &degraded;
  o.agent_retry["limited"].budget = budget;
  Workflow wf(agents, o, t.env());
  auto run = wf.start(task("limited"), false);
  ASSERT_TRUE(run->next().hedge_after);
  t.clock.advance(milliseconds(50));
  EXPECT_EQ(run->start_hedge(), -1);
  EXPECT_EQ(outstanding("limited"), 1);
  EXPECT_EQ(budget->retries_in_flight(), 0);  // the budget's retry given back
  EXPECT_THAT(hedge_events(), ::testing::ElementsAre("not_sent"));
  run->provide_call_result(std::string("{}"));
  ASSERT_EQ(run->next().kind, WorkflowStep::Kind::done);
  // Room for two calls at once: the hedge goes, and takes the second.
  add({.name = "roomier",
       .endpoints = {"http://m0", "http://m1"},
       .rate_limit = RateLimiterOptions{.rate_per_second = 1, .burst = 2},
       .hedging = fixed_hedging(milliseconds(50))});
  auto roomier = wf.start(task("roomier", "code_review", "t2"), false);
  ASSERT_TRUE(roomier->next().hedge_after);
  t.clock.advance(milliseconds(50));
  EXPECT_GE(roomier->start_hedge(), 0);
  EXPECT_FALSE(agents.find("roomier")->rate_limiter->try_acquire(t.clock.now()).allowed);
  roomier->provide_call_result(std::string("{}"), CallSlot::hedge);
  ASSERT_EQ(roomier->next().kind, WorkflowStep::Kind::done);
}

TEST_F(WorkflowHedgingTest, AHedgeThatWinsAnswersAndTheSlowFirstCallCountsAgainstItsReplica) {
  budget = std::make_shared<RetryBudget>(RetryBudgetOptions{});  // the floor pays for it
  Workflow wf = make();
  auto run = wf.start(task("reviewer"), false);
  const int first = run->next().replica;
  t.clock.advance(milliseconds(50));
  const int hedge = run->start_hedge();
  ASSERT_GE(hedge, 0);
  EXPECT_EQ(budget->retries_in_flight(), 1);  // held while the hedge is out
  t.clock.advance(milliseconds(10));
  run->provide_call_result(std::string(R"({"by":"hedge"})"), CallSlot::hedge);
  ASSERT_EQ(run->next().kind, WorkflowStep::Kind::done);
  const Outcome out = run->take_outcome();
  EXPECT_EQ(out.status, OutcomeStatus::succeeded);
  EXPECT_EQ(out.answer, R"({"by":"hedge"})");
  ASSERT_EQ(out.attempts.size(), 1u);
  EXPECT_EQ(out.attempts[0].replica, first);
  EXPECT_EQ(out.attempts[0].hedge_replica, hedge);
  EXPECT_TRUE(out.attempts[0].hedge_won);
  EXPECT_THAT(out.to_json(), ::testing::HasSubstr(R"("hedge_won":true)"));
  // The winner's replica heard an answer of 10 ms; the first call's, a failure (slow).
  EXPECT_EQ(replica("reviewer", hedge).failures, 0u);
  EXPECT_EQ(replica("reviewer", hedge).average_latency, milliseconds(10));
  EXPECT_EQ(replica("reviewer", first).failures, 1u);
  EXPECT_EQ(outstanding("reviewer"), 0);
  EXPECT_EQ(budget->retries_in_flight(), 0);
  // Two calls, neither failed, one of them a retry call (the loser, counted as the hedge).
  const RetryBudget::Reading r = budget->reading(t.clock.now());
  EXPECT_EQ(r.calls, 2u);
  EXPECT_EQ(r.failures, 0u);
  EXPECT_EQ(r.requests(), 1u);
  EXPECT_THAT(hedge_events(), ::testing::ElementsAre("won"));
  EXPECT_EQ(agents.find("reviewer")->breaker.snapshot(t.clock).failure_count, 0);
}

TEST_F(WorkflowHedgingTest, AFirstCallThatWinsAbandonsTheHedge) {
  Workflow wf = make();
  auto run = wf.start(task("reviewer"), false);
  const int first = run->next().replica;
  t.clock.advance(milliseconds(50));
  const int hedge = run->start_hedge();
  t.clock.advance(milliseconds(5));
  run->provide_call_result(std::string("{}"), CallSlot::first);
  ASSERT_EQ(run->next().kind, WorkflowStep::Kind::done);
  const Outcome out = run->take_outcome();
  ASSERT_EQ(out.attempts.size(), 1u);
  EXPECT_EQ(out.attempts[0].replica, first);
  EXPECT_EQ(out.attempts[0].hedge_replica, hedge);
  EXPECT_FALSE(out.attempts[0].hedge_won);
  EXPECT_EQ(replica("reviewer", first).failures, 0u);
  EXPECT_EQ(replica("reviewer", first).average_latency, milliseconds(55));
  EXPECT_EQ(replica("reviewer", hedge).failures, 0u);  // abandoned: nothing known of it
  EXPECT_EQ(outstanding("reviewer"), 0);
  EXPECT_THAT(hedge_events(), ::testing::ElementsAre("lost"));
}

TEST_F(WorkflowHedgingTest, ACallThatFailsWhileTheOtherIsOutIsCountedAndTheOtherDecides) {
  Workflow wf = make();
  auto run = wf.start(task("reviewer"), false);
  const int first = run->next().replica;
  t.clock.advance(milliseconds(50));
  const int hedge = run->start_hedge();
  run->provide_early_failure(CallSlot::first, Error::http(503, "overloaded"));
  EXPECT_EQ(replica("reviewer", first).failures, 1u);
  EXPECT_EQ(outstanding("reviewer"), 1);  // the hedge
  run->provide_call_result(std::string("{}"), CallSlot::hedge);
  ASSERT_EQ(run->next().kind, WorkflowStep::Kind::done);
  const Outcome out = run->take_outcome();
  EXPECT_EQ(out.status, OutcomeStatus::succeeded);
  ASSERT_EQ(out.attempts.size(), 2u);
  EXPECT_EQ(out.attempts[0].decision, "await_other");
  EXPECT_EQ(out.attempts[0].error_type, ErrorType::temporary_unavailable);
  EXPECT_FALSE(out.attempts[0].hedge_won);
  EXPECT_EQ(out.attempts[1].decision, "answered");
  EXPECT_TRUE(out.attempts[1].hedge_won);
  EXPECT_EQ(replica("reviewer", first).failures, 1u);  // once, not again as the loser
  EXPECT_EQ(replica("reviewer", hedge).failures, 0u);
  EXPECT_EQ(outstanding("reviewer"), 0);
  EXPECT_FALSE(out.escalation);  // answered at once: nothing to escalate
  EXPECT_THAT(hedge_events(), ::testing::ElementsAre("won"));
}

TEST_F(WorkflowHedgingTest, WhenBothCallsFailTheLaterFailureTakesTheFailuresWay) {
  Workflow wf = make();
  auto run = wf.start(task("reviewer"), false);
  const int first = run->next().replica;
  t.clock.advance(milliseconds(50));
  const int hedge = run->start_hedge();
  run->provide_early_failure(CallSlot::hedge, Error::http(503, "overloaded"));
  run->provide_call_result(Error::http(503, "overloaded"), CallSlot::first);
  const WorkflowStep& step = run->next();
  ASSERT_EQ(step.kind, WorkflowStep::Kind::wait);  // a retry, to the replica left
  const WorkflowStep& retry = run->next();
  ASSERT_EQ(retry.kind, WorkflowStep::Kind::call);
  EXPECT_EQ(retry.replica, 3 - first - hedge);
  EXPECT_EQ(replica("reviewer", first).failures, 1u);
  EXPECT_EQ(replica("reviewer", hedge).failures, 1u);
  EXPECT_THAT(hedge_events(), ::testing::ElementsAre("lost"));
}

TEST_F(WorkflowHedgingTest, EveryAnsweredCallIsASampleOfTheLatencyWindow) {
  Workflow wf = make();
  const HedgingPolicy& policy = *agents.find("observed")->hedging;
  for (int i = 0; i < 3; ++i) {
    auto run = wf.start(task("observed", "x", "t" + std::to_string(i)), false);
    ASSERT_EQ(run->next().kind, WorkflowStep::Kind::call);
    t.clock.advance(milliseconds(20));
    run->provide_call_result(i == 2 ? Result<std::string>(Error::http(503, "no"))
                                    : Result<std::string>(std::string("{}")));
    // The failed one is retried: its retry answers.
    for (const WorkflowStep* s = &run->next(); s->kind != WorkflowStep::Kind::done;
         s = &run->next()) {
      if (s->kind == WorkflowStep::Kind::call) run->provide_call_result(std::string("{}"));
    }
  }
  EXPECT_EQ(policy.latencies().samples(t.clock.now()), 3u);  // the failure is not a sample
}

TEST_F(WorkflowHedgingTest, ARunDestroyedMidRaceGivesBothCallsBack) {
  budget = std::make_shared<RetryBudget>(RetryBudgetOptions{});
  Workflow wf = make();
  {
    auto run = wf.start(task("reviewer"), false);
    ASSERT_EQ(run->next().kind, WorkflowStep::Kind::call);
    t.clock.advance(milliseconds(50));
    ASSERT_GE(run->start_hedge(), 0);
    EXPECT_EQ(outstanding("reviewer"), 2);
  }
  EXPECT_EQ(outstanding("reviewer"), 0);
  EXPECT_EQ(budget->retries_in_flight(), 0);
  EXPECT_EQ(agents.find("reviewer")->in_flight.load(), 0);
}

TEST_F(WorkflowHedgingTest, TheSynchronousDriverDoesNotHedge) {
  class Once final : public AgentInvoker {
   public:
    Result<std::string> invoke(const AgentInfo&, int, const Task&, int) override {
      ++calls;
      return std::string("{}");
    }
    int calls = 0;
  } invoker;
  Outcome out = make().run(task("reviewer"), invoker);
  EXPECT_EQ(out.status, OutcomeStatus::succeeded);
  EXPECT_EQ(invoker.calls, 1);
  EXPECT_TRUE(hedge_events().empty());
}

}  // namespace
}  // namespace mend
