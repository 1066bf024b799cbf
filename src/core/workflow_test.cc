#include "mend/workflow.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <map>
#include <mutex>

#include "test_env.h"

namespace mend {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::secs;

// Agents answer from a script: per agent (and replica), a queue of results; an empty queue
// answers success. A fake of mend's own interface: the loopback tests in tests/e2e do the real
// HTTP.
class ScriptedInvoker final : public AgentInvoker {
 public:
  void script(const std::string& agent, std::vector<Result<std::string>> results, int replica = 0) {
    auto& q = scripts_[{agent, replica}];
    for (auto& r : results) q.push_back(std::move(r));
  }
  void fail_always(const std::string& agent, Error error) { always_[agent] = std::move(error); }

  Result<std::string> invoke(const AgentInfo& agent, int replica, const Task& task,
                             int attempt) override {
    calls.push_back(agent.name + "#" + std::to_string(replica) + "/" + std::to_string(attempt));
    if (auto it = always_.find(agent.name); it != always_.end()) return it->second;
    auto& q = scripts_[{agent.name, replica}];
    if (q.empty())
      return std::string(R"({"by":")" + agent.name + R"(","task":")" + task.id + "\"}");
    Result<std::string> r = std::move(q.front());
    q.pop_front();
    return r;
  }
  std::vector<std::string> calls;

 private:
  std::map<std::pair<std::string, int>, std::deque<Result<std::string>>> scripts_;
  std::map<std::string, Error> always_;
};

class RecordingSink final : public EscalationSink {
 public:
  Result<EscalationTaken> escalate(const EscalationRequest& request) override {
    requests.push_back(request);
    EscalationTaken t;
    const EscalationPlan plan = policy.plan(request.level);
    t.level = request.level;
    t.action = plan.action;
    t.record_id = static_cast<std::int64_t>(requests.size());
    t.record = "TKT-" + std::to_string(requests.size());
    t.created = true;
    t.occurrences = 1;
    t.sla = plan.sla;
    t.channel = plan.channel;
    return t;
  }
  EscalationPolicy policy;
  std::vector<EscalationRequest> requests;
};

// Self-healing's actions: everything succeeds, and the probe answers `health`.
class FakeOperations final : public AgentOperations {
 public:
  ProbeResult probe(const std::string& agent) override {
    calls.push_back("probe " + agent);
    ProbeResult p;
    p.answered = true;
    p.reported = health;
    return p;
  }
  Result<void> clear_caches(const std::string& a) override { return log("clear_caches", a); }
  Result<void> reset_connection_pools(const std::string& a) override {
    return log("reset_connection_pools", a);
  }
  Result<void> increase_connection_limits(const std::string& a) override {
    return log("increase_connection_limits", a);
  }
  Result<void> reconnect_database(const std::string& a) override {
    return log("reconnect_database", a);
  }
  Result<void> restart(const std::string& a, bool) override { return log("restart", a); }
  Result<void> wait_until_ready(const std::string& a, Duration) override {
    return log("wait_until_ready", a);
  }
  HealthState health = HealthState::healthy;
  std::vector<std::string> calls;

 private:
  Result<void> log(const std::string& what, const std::string& agent) {
    calls.push_back(what + " " + agent);
    return {};
  }
};

Error typed(ErrorType type, std::string message = "boom") {
  return Error::classified_as(type, default_severity(type), std::move(message));
}

class WorkflowTest : public ::testing::Test {
 protected:
  WorkflowTest() {
    add({.name = "senior-backend-developer", .capabilities = {"backend"}});
    add({.name = "senior-full-stack-developer", .capabilities = {"backend", "frontend"}});
    add({.name = "senior-ai-engineer", .capabilities = {"ai"}});
    add({.name = "agentzero-coordinator", .generalist = true});
    agents.set_chains(seed_fallback_chains());
  }
  void add(AgentInfo info) { ASSERT_TRUE(agents.add(std::move(info)).ok()); }

  Workflow make(bool with_degraded = true) {
    WorkflowOptions o;
    o.degraded = with_degraded ? &degraded : nullptr;
    o.healer = &healer;
    o.escalations = &sink;
    return Workflow(agents, o, t.env());
  }
  Task task(std::string id = "t1", std::string type = "code_review") {
    Task k;
    k.id = std::move(id);
    k.type = std::move(type);
    k.agent = "senior-backend-developer";
    k.fields["content"] = "int main() { return 0; }\n";
    return k;
  }

  testing::TestEnv t;
  AgentRegistry agents;
  DegradedService degraded;
  SelfHealer healer;
  RecordingSink sink;
  ScriptedInvoker invoker;
  FakeOperations ops;
};

TEST_F(WorkflowTest, FirstAttemptSuccessIsSucceededWithoutEscalation) {
  Outcome out = make().run(task(), invoker, &ops);
  EXPECT_EQ(out.status, OutcomeStatus::succeeded);
  EXPECT_EQ(out.answered_by, "senior-backend-developer");
  ASSERT_EQ(out.attempts.size(), 1u);
  EXPECT_TRUE(out.attempts[0].succeeded);
  EXPECT_FALSE(out.escalation.has_value());
  EXPECT_TRUE(sink.requests.empty());
}

TEST_F(WorkflowTest, TransientErrorsAreRetriedWithSeedBackoffAndOnlyLogged) {
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
  // The primary: its own policy, 1 retry after 5 s. The chain's next agent: the global seed
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

TEST_F(WorkflowTest, ExhaustedRetriesFallBackAlongTheSeedChainAndTicket) {
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

TEST_F(WorkflowTest, InterruptedIsNotAnAnswer) {
  Outcome out;
  out.status = OutcomeStatus::interrupted;
  EXPECT_FALSE(out.answered());
  EXPECT_EQ(to_string(OutcomeStatus::interrupted), "interrupted");
}

TEST_F(WorkflowTest, UnresolvedLowSeverityIsRaisedToMedium) {
  invoker.fail_always("senior-backend-developer", Error::http(429, "slow down"));
  Outcome out = make().run(task(), invoker, &ops);
  EXPECT_EQ(out.status, OutcomeStatus::fallback);
  EXPECT_EQ(out.attempts[0].severity, Severity::low);
  // Rate limits wait twice as long (seed): 2, 4, 8 s.
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
  // After the seed's 60 s recovery timeout, a probe goes through again.
  t.clock.advance(std::chrono::seconds(60));
  invoker.calls.clear();
  wf.run(task("t6"), invoker, &ops);
  EXPECT_EQ(invoker.calls.front(), "senior-backend-developer#0/0");
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

TEST_F(WorkflowTest, TheDeadlineStopsRetries) {
  invoker.fail_always("senior-backend-developer", Error::http(503));
  Task k = task();
  k.deadline = secs(2.5);  // 1 s + 2 s of backoff would end past it
  Outcome out = make().run(k, invoker, &ops);
  EXPECT_THAT(t.sleeper.sleeps(), ElementsAre(secs(1)));
  EXPECT_EQ(out.status, OutcomeStatus::fallback);
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

TEST(AgentPlanTest, PrimaryChainCapabilityGeneralistWithoutRepeats) {
  AgentRegistry agents;
  ASSERT_TRUE(agents.add({.name = "senior-frontend-developer", .capabilities = {"ui"}}).ok());
  ASSERT_TRUE(agents.add({.name = "designer", .capabilities = {"ui"}}).ok());
  ASSERT_TRUE(agents.add({.name = "agentzero-coordinator", .generalist = true}).ok());
  ASSERT_TRUE(agents.add({.name = "helper", .generalist = true}).ok());
  agents.set_chains(seed_fallback_chains());
  std::vector<std::string> order;
  std::vector<CandidateRole> roles;
  for (const Candidate& c : agents.plan("senior-frontend-developer", {})) {
    order.push_back(c.agent);
    roles.push_back(c.role);
  }
  EXPECT_THAT(order, ElementsAre("senior-frontend-developer", "senior-full-stack-developer",
                                 "code-generation-improver", "agentzero-coordinator", "designer",
                                 "helper"));
  EXPECT_EQ(roles[4], CandidateRole::capability);
  EXPECT_EQ(roles[5], CandidateRole::generalist);
  EXPECT_EQ(agents.unavailable_reason("code-generation-improver"), SkipReason::unknown_agent);
}

TEST(AgentPlanTest, RegistryRejectsBadAgents) {
  AgentRegistry agents;
  EXPECT_FALSE(agents.add({.name = ""}).ok());
  ASSERT_TRUE(agents.add({.name = "a"}).ok());
  Result<void> dup = agents.add({.name = "a"});
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.error().type, ErrorType::configuration_error);
  EXPECT_THAT(dup.error().message, HasSubstr("twice"));
  AgentInfo bad{.name = "b"};
  bad.breaker.failure_threshold = 0;
  EXPECT_FALSE(agents.add(bad).ok());
  EXPECT_EQ(agents.size(), 1u);
}

}  // namespace
}  // namespace mend
