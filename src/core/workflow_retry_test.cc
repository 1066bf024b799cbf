// The workflow's retries: error-scaled backoff, per-agent retry options, a resumed task's
// retries left, and what stops them (a deadline, a failure that opens the circuit); an agent's
// rate limit and call timeout.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "mend/core/workflow.h"
#include "test_env.h"
#include "workflow_test_support.h"

namespace mend {
namespace {

using ::testing::ElementsAre;
using testing::secs;
using workflow_test_support::ScriptedInvoker;
using workflow_test_support::WorkflowTest;

TEST_F(WorkflowTest, FirstAttemptSuccessIsSucceededWithoutEscalation) {
  Outcome out = make().run(task(), invoker, &ops);
  EXPECT_EQ(out.status, OutcomeStatus::succeeded);
  EXPECT_EQ(out.answered_by, "senior-backend-developer");
  ASSERT_EQ(out.attempts.size(), 1u);
  EXPECT_TRUE(out.attempts[0].succeeded);
  EXPECT_FALSE(out.escalation.has_value());
  EXPECT_TRUE(sink.requests.empty());
}

TEST_F(WorkflowTest, TransientErrorsAreRetriedWithErrorScaledBackoffAndOnlyLogged) {
  invoker.script("senior-backend-developer",
                 {Error::http(503, "overloaded"), Error::http(503, "overloaded")});
  Outcome out = make().run(task(), invoker, &ops);
  EXPECT_EQ(out.status, OutcomeStatus::succeeded_after_retry);
  ASSERT_EQ(out.attempts.size(), 3u);
  EXPECT_EQ(out.attempts[0].error_type, ErrorType::temporary_unavailable);
  EXPECT_EQ(out.attempts[0].decision, "retry");
  // base 1 s * 2^attempt, no jitter at u = 0.5.
  EXPECT_EQ(out.attempts[0].delay, secs(1));
  EXPECT_EQ(out.attempts[1].delay, secs(2));
  EXPECT_THAT(t.sleeper.sleeps(), ElementsAre(secs(1), secs(2)));
  ASSERT_TRUE(out.escalation.has_value());
  EXPECT_EQ(out.escalation->action, "logged");
  EXPECT_TRUE(out.escalation->retry_recommended);
  EXPECT_TRUE(sink.requests.empty());
}

TEST_F(WorkflowTest, PerAgentRetryOptionsReplaceTheGlobalOnesForThatAgentOnly) {
  invoker.fail_always("senior-backend-developer", Error::http(503, "overloaded"));
  invoker.fail_always("senior-full-stack-developer", Error::http(503, "overloaded"));
  WorkflowOptions o;
  o.degraded = &degraded;
  o.escalations = &sink;
  RetryOptions once;
  once.max_retries = 1;
  once.backoff.base = secs(5);
  o.agent_retry["senior-backend-developer"] = once;
  Workflow wf(agents, o, t.env());
  Outcome out = wf.run(task(), invoker, &ops);
  // The primary: its own policy, 1 retry after 5 s. The chain's next agent: the global default
  // policy, 3 retries after 1, 2 and 4 s.
  EXPECT_THAT(invoker.calls, ::testing::IsSupersetOf(
                                 {"senior-backend-developer#0/0", "senior-backend-developer#0/1"}));
  EXPECT_EQ(std::count(invoker.calls.begin(), invoker.calls.end(), "senior-backend-developer#0/2"),
            0);
  EXPECT_EQ(std::count_if(invoker.calls.begin(), invoker.calls.end(),
                          [](const std::string& c) {
                            return c.rfind("senior-full-stack-developer#0/", 0) == 0;
                          }),
            4);
  const std::vector<Duration> sleeps = t.sleeper.sleeps();
  ASSERT_GE(sleeps.size(), 4u);
  EXPECT_THAT(std::vector<Duration>(sleeps.begin(), sleeps.begin() + 4),
              ElementsAre(secs(5), secs(1), secs(2), secs(4)));
  EXPECT_NE(out.status, OutcomeStatus::failed);
}

TEST_F(WorkflowTest, AResumedTaskCarriesOnWithTheRetriesItHadLeft) {
  invoker.fail_always("senior-backend-developer", Error::http(503, "overloaded"));
  Task resumed = task();
  resumed.prior_attempts = 2;  // two calls before mend restarted: two of four left
  Outcome out = make().run(resumed, invoker, &ops);
  EXPECT_EQ(out.status, OutcomeStatus::fallback);
  EXPECT_THAT(invoker.calls,
              ElementsAre("senior-backend-developer#0/2", "senior-backend-developer#0/3",
                          "senior-full-stack-developer#0/0"));
  // The backoff goes on from where it was: 4 s before the last retry.
  EXPECT_THAT(t.sleeper.sleeps(), ElementsAre(secs(4)));
}

TEST_F(WorkflowTest, TheDeadlineStopsRetries) {
  invoker.fail_always("senior-backend-developer", Error::http(503));
  Task k = task();
  k.deadline = secs(2.5);  // 1 s + 2 s of backoff would end past it
  Outcome out = make().run(k, invoker, &ops);
  EXPECT_THAT(t.sleeper.sleeps(), ElementsAre(secs(1)));
  EXPECT_EQ(out.status, OutcomeStatus::fallback);
}

TEST_F(WorkflowTest, AFailureThatOpensTheCircuitStopsTheRetriesWithoutWaiting) {
  AgentRegistry two;
  AgentInfo fragile{.name = "a"};
  fragile.breaker.failure_threshold = 2;
  ASSERT_TRUE(two.add(fragile).ok());
  ASSERT_TRUE(two.add({.name = "g", .generalist = true}).ok());
  Workflow wf(two, {}, t.env());
  invoker.fail_always("a", Error::http(503));
  Task k = task();
  k.agent = "a";
  Outcome out = wf.run(k, invoker);
  EXPECT_THAT(t.sleeper.sleeps(), ElementsAre(secs(1)));  // no wait after the opening failure
  EXPECT_EQ(out.attempts[1].decision, "fallback");
  EXPECT_EQ(out.answered_by, "g");
  ASSERT_TRUE(out.error.has_value());
  EXPECT_EQ(out.error->type, ErrorType::temporary_unavailable);
  EXPECT_EQ(out.error->stop, StopReason::circuit_open);
}

TEST_F(WorkflowTest, APassedDeadlineTriesNoFurtherAgent) {
  invoker.fail_always("senior-backend-developer", Error::http(503));
  Task k = task();
  k.deadline = secs(7.5);  // 1 + 2 + 4 s of backoff fit; the fallback would start at 7 s + ...
  t.sleeper.clear();
  Outcome out = make().run(k, invoker, &ops);
  EXPECT_THAT(t.sleeper.sleeps(), ElementsAre(secs(1), secs(2), secs(4)));
  EXPECT_EQ(out.status, OutcomeStatus::fallback);  // at 7 s the deadline has not passed yet
  agents.find("senior-backend-developer")->breaker.reset(t.clock);  // forget the 4 failures
  Task late = task("t2");
  late.deadline = secs(1.8);
  ScriptedInvoker slow;
  slow.fail_always("senior-backend-developer", Error::http(503));
  class Clocked final : public AgentInvoker {
   public:
    Clocked(ScriptedInvoker& inner, ManualClock& clock) : inner_(inner), clock_(clock) {}
    Result<std::string> invoke(const AgentInfo& a, int r, const Task& t, int n) override {
      clock_.advance(secs(0.5));  // each call takes half a second
      return inner_.invoke(a, r, t, n);
    }

   private:
    ScriptedInvoker& inner_;
    ManualClock& clock_;
  } clocked(slow, t.clock);
  Outcome timed_out = make().run(late, clocked, &ops);
  // Call (0.5 s), wait 1 s, call (0.5 s): at 2 s the deadline (1.8 s) has passed while the
  // retry ran, so no fallback agent is called; the degraded service answers.
  EXPECT_EQ(timed_out.status, OutcomeStatus::degraded);
  EXPECT_THAT(slow.calls,
              ElementsAre("senior-backend-developer#0/0", "senior-backend-developer#0/1"));
}

// An agent's rate limit and call timeout (AgentInfo) reach the calls through its attempt policy:
// the rules are tested in attempt_policy_test.cc, the wiring here.
TEST_F(WorkflowTest, ARateLimitedCallIsRetriedAfterTheLimitersWaitWithoutReachingTheAgent) {
  AgentRegistry limited;
  AgentInfo a{.name = "a"};
  a.rate_limit = RateLimiterOptions{.rate_per_second = 1, .burst = 1};
  ASSERT_TRUE(limited.add(a).ok());
  Workflow wf(limited, {}, t.env());
  Task k = task();
  k.agent = "a";
  ASSERT_EQ(wf.run(k, invoker).status, OutcomeStatus::succeeded);  // spends the token
  Outcome out = wf.run(k, invoker);
  EXPECT_EQ(out.status, OutcomeStatus::succeeded_after_retry);
  ASSERT_EQ(out.attempts.size(), 2u);
  EXPECT_EQ(out.attempts[0].error_type, ErrorType::rate_limit_exceeded);
  EXPECT_EQ(out.attempts[0].message, "rate limiter 'rate_limit:a' refused the call");
  EXPECT_EQ(out.attempts[0].decision, "retry");
  // The limiter's retry_after, 1 s, and a tenth more: retry_after_jitter 0.2 at the draw 0.5.
  EXPECT_EQ(out.attempts[0].delay, std::chrono::milliseconds(1100));
  EXPECT_THAT(invoker.calls, ElementsAre("a#0/0", "a#0/1"));  // the refused call never went
  EXPECT_EQ(limited.find("a")->breaker.snapshot(t.clock).failure_count, 0);
  EXPECT_EQ(limited.find("a")->in_flight.load(), 0);
}

TEST_F(WorkflowTest, NoCallStartsAfterTheDeadlineNotEvenOnAnotherReplica) {
  AgentRegistry replicated;
  ASSERT_TRUE(replicated.add({.name = "a", .endpoints = {"http://a", "http://b"}}).ok());
  class Slow final : public AgentInvoker {
   public:
    explicit Slow(ManualClock& clock) : clock_(clock) {}
    Result<std::string> invoke(const AgentInfo&, int replica, const Task&, int) override {
      replicas.push_back(replica);
      clock_.advance(secs(2));  // cut off at the deadline, as the transport would
      return workflow_test_support::typed(ErrorType::memory_exhausted);
    }
    std::vector<int> replicas;

   private:
    ManualClock& clock_;
  } slow(t.clock);
  Workflow wf(replicated, {}, t.env());
  Task k = task();
  k.agent = "a";
  k.deadline = secs(2);
  Outcome out = wf.run(k, slow);
  EXPECT_THAT(slow.replicas, ElementsAre(0));  // replica 1 is not called past the deadline
  ASSERT_EQ(out.attempts.size(), 1u);
  EXPECT_EQ(out.attempts[0].decision, "deadline_exceeded");
  EXPECT_EQ(out.status, OutcomeStatus::failed);
}

TEST_F(WorkflowTest, EachCallCarriesItsTimeLimitAndTheTaskKeepsItsOwn) {
  class Recording final : public AgentInvoker {
   public:
    Result<std::string> invoke(const AgentInfo&, int, const Task& task, int) override {
      limits.push_back(task.attempt_timeout);
      return std::string("{}");
    }
    std::vector<std::optional<Duration>> limits;
  } recording;
  AgentRegistry timed;
  AgentInfo a{.name = "a"};
  a.call_timeout = secs(30);
  ASSERT_TRUE(timed.add(a).ok());
  Workflow wf(timed, {}, t.env());
  Task k = task();
  k.agent = "a";
  wf.run(k, recording);
  k.deadline = secs(10);
  wf.run(k, recording);
  k.attempt_timeout = secs(5);
  wf.run(k, recording);
  EXPECT_THAT(recording.limits, ElementsAre(secs(30), secs(10), secs(5)));
  k.attempt_timeout.reset();
  auto run = wf.start(k, /*can_heal=*/false);
  const WorkflowStep& step = run->next();
  ASSERT_EQ(step.kind, WorkflowStep::Kind::call);
  EXPECT_EQ(step.task->attempt_timeout, secs(10));
  EXPECT_FALSE(run->task().attempt_timeout.has_value());  // as submitted (and journaled)
}

}  // namespace
}  // namespace mend
