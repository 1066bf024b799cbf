// The workflow over an agent's replicas: calls spread over healthy replicas, a retry goes to a
// replica the task has not failed on, a replica that fails everything is ejected and the agent
// keeps answering from the other (issue 17's "0 of 300 tasks answered"), resource errors move
// through the replicas once each, and a call abandoned with its run is no longer outstanding.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "mend/core/workflow.h"
#include "test_env.h"
#include "workflow_test_support.h"

namespace mend {
namespace {

using ::testing::ElementsAre;
using testing::secs;
using ::testing::UnorderedElementsAre;
using workflow_test_support::typed;

// Replicas that fail every call with the error set for them (per agent and replica), and answer
// otherwise; it keeps the replica of every call.
class ReplicaInvoker final : public AgentInvoker {
 public:
  Result<std::string> invoke(const AgentInfo& agent, int replica, const Task& task, int) override {
    replicas.push_back(replica);
    if (auto it = failing.find({agent.name, replica}); it != failing.end()) return it->second;
    return std::string(R"({"by":")" + agent.name + R"(","replica":)" + std::to_string(replica) +
                       R"(,"task":")" + task.id + "\"}");
  }
  int calls_to(int replica) const {
    return static_cast<int>(std::count(replicas.begin(), replicas.end(), replica));
  }
  std::map<std::pair<std::string, int>, Error> failing;
  std::vector<int> replicas;
};

class WorkflowReplicasTest : public ::testing::Test {
 protected:
  WorkflowReplicasTest() {
    add({.name = "reviewer", .endpoints = {"http://r0", "http://r1"}});
    add({.name = "fallback", .generalist = true});
  }
  void add(AgentInfo info) { ASSERT_TRUE(agents.add(std::move(info)).ok()); }
  Workflow make() {
    WorkflowOptions o;
    o.degraded = &degraded;  // a task the agents did not answer would be degraded, not failed
    return Workflow(agents, o, t.env());
  }
  Task task(int n) {
    Task k;
    k.id = "t" + std::to_string(n);
    k.type = "code_review";
    k.agent = "reviewer";
    return k;
  }
  const AgentRegistry::Entry& reviewer() const { return *agents.find("reviewer"); }

  testing::TestEnv t;
  AgentRegistry agents;
  DegradedService degraded;
  ReplicaInvoker invoker;
};

TEST_F(WorkflowReplicasTest, TwoHealthyReplicasShareTheCalls) {
  Workflow wf = make();
  for (int i = 0; i < 200; ++i) {
    Outcome out = wf.run(task(i), invoker);
    ASSERT_EQ(out.status, OutcomeStatus::succeeded) << i;
    ASSERT_EQ(out.attempts.size(), 1u);
    EXPECT_EQ(out.attempts[0].replica, invoker.replicas.back());  // the log names the replica
  }
  EXPECT_NEAR(invoker.calls_to(0), 100, 2);
  EXPECT_NEAR(invoker.calls_to(1), 100, 2);
  EXPECT_THAT(std::vector<int>(invoker.replicas.begin(), invoker.replicas.begin() + 4),
              ElementsAre(0, 1, 0, 1));
}

TEST_F(WorkflowReplicasTest, AReplicaThatFailsEverythingIsEjectedAndTheAgentKeepsAnswering) {
  invoker.failing[{"reviewer", 0}] = Error::http(503, "overloaded");  // temporary_unavailable
  Workflow wf = make();
  int by_reviewer = 0;
  for (int i = 0; i < 300; ++i) {
    Outcome out = wf.run(task(i), invoker);
    EXPECT_NE(out.status, OutcomeStatus::degraded) << i;
    by_reviewer += out.answered_by == "reviewer" ? 1 : 0;
    t.clock.advance(secs(1));  // tasks keep arriving, one a second
  }
  EXPECT_EQ(by_reviewer, 300);
  EXPECT_EQ(reviewer().breaker.state(), CircuitState::closed);
  // Replica 0 took the first call of five tasks, each retried on replica 1, then sat out 30 s;
  // back, five more, 60 s out; and so on: a small share of the calls, not every first call.
  EXPECT_EQ(invoker.calls_to(1), 300);
  EXPECT_LT(invoker.calls_to(0), 40);
  const std::vector<ReplicaSnapshot> replicas = reviewer().balancer.snapshot(t.clock.now());
  EXPECT_GE(replicas[0].ejections, 3u);
  EXPECT_EQ(replicas[1].ejections, 0u);
  EXPECT_EQ(replicas[0].outstanding + replicas[1].outstanding, 0);
}

TEST_F(WorkflowReplicasTest, ARetryGoesToAReplicaTheTaskHasNotFailedOn) {
  invoker.failing[{"reviewer", 0}] = Error::http(503, "overloaded");
  Outcome out = make().run(task(1), invoker);
  EXPECT_EQ(out.status, OutcomeStatus::succeeded_after_retry);
  ASSERT_EQ(out.attempts.size(), 2u);
  EXPECT_EQ(out.attempts[0].replica, 0);
  EXPECT_EQ(out.attempts[0].decision, "retry");
  // At once: the backoff gives the failed replica time, and the retry goes to the other one.
  EXPECT_EQ(out.attempts[0].delay, Duration::zero());
  EXPECT_EQ(out.attempts[1].replica, 1);
  EXPECT_EQ(out.attempts[1].attempt, 1);  // a retry still: it counts against the agent's retries
  EXPECT_THAT(t.sleeper.sleeps(), ElementsAre(Duration::zero()));
}

TEST_F(WorkflowReplicasTest, WhenEveryReplicaFailedRetriesGoOnOverAllOfThem) {
  invoker.failing[{"reviewer", 0}] = Error::http(503, "overloaded");
  invoker.failing[{"reviewer", 1}] = Error::http(503, "overloaded");
  Outcome out = make().run(task(1), invoker);
  EXPECT_EQ(out.answered_by, "fallback");
  // Four calls in all, as with one replica: the retries, not the replicas, bound them.
  EXPECT_THAT(invoker.replicas, ElementsAre(0, 1, 0, 1, 0));
  ASSERT_EQ(out.attempts.size(), 5u);
  EXPECT_EQ(out.attempts[3].decision, "fallback");
}

TEST_F(WorkflowReplicasTest, ResourceErrorsMoveThroughEachReplicaOnce) {
  t.random = std::make_unique<SeededRandom>(17);  // three replicas: the two choices are drawn
  AgentRegistry three;
  AgentInfo a{.name = "a", .endpoints = {"http://0", "http://1", "http://2"}};
  a.replica_balancing.max_ejection_percent = 0;  // ejection is the other tests' subject
  a.breaker.failure_threshold = 1000;            // and so is a circuit that opens
  ASSERT_TRUE(three.add(a).ok());
  Workflow wf(three, {}, t.env());
  Task k = task(1);
  k.agent = "a";
  for (int r = 0; r < 3; ++r) invoker.failing[{"a", r}] = typed(ErrorType::memory_exhausted);
  Outcome out = wf.run(k, invoker);
  // Each replica once, at once (not retryable: no backoff), then the plan moves on.
  EXPECT_THAT(invoker.replicas, UnorderedElementsAre(0, 1, 2));
  EXPECT_TRUE(t.sleeper.sleeps().empty());
  ASSERT_EQ(out.attempts.size(), 3u);
  EXPECT_EQ(out.attempts[0].decision, "next_replica");
  EXPECT_EQ(out.attempts[1].decision, "next_replica");
  EXPECT_EQ(out.attempts[2].decision, "fallback");
  EXPECT_EQ(out.status, OutcomeStatus::failed);

  // With one replica well, the task gets there, whichever the first pick was.
  for (int task_number = 2; task_number < 12; ++task_number) {
    invoker.failing.erase({"a", task_number % 3});
    Task again = task(task_number);
    again.agent = "a";
    Outcome next = wf.run(again, invoker);
    ASSERT_FALSE(next.attempts.empty());
    invoker.failing[{"a", task_number % 3}] = typed(ErrorType::memory_exhausted);
    ASSERT_EQ(next.attempts.back().decision, "answered") << task_number;
    EXPECT_EQ(next.attempts.back().replica, task_number % 3);
    EXPECT_LE(next.attempts.size(), 3u);
  }
}

TEST_F(WorkflowReplicasTest, CallsInFlightSteerTheNextPickAndAnAbandonedRunGivesItsBack) {
  Workflow wf = make();
  auto first = wf.start(task(1), /*can_heal=*/false);
  auto second = wf.start(task(2), /*can_heal=*/false);
  const WorkflowStep& a = first->next();
  ASSERT_EQ(a.kind, WorkflowStep::Kind::call);
  EXPECT_EQ(a.replica, 0);
  const WorkflowStep& b = second->next();
  ASSERT_EQ(b.kind, WorkflowStep::Kind::call);
  EXPECT_EQ(b.replica, 1);
  second->provide_call_result(std::string("{}"));
  EXPECT_EQ(second->next().kind, WorkflowStep::Kind::done);
  // Replica 0 still has the first task's call out: the next goes to replica 1.
  auto third = wf.start(task(3), /*can_heal=*/false);
  EXPECT_EQ(third->next().replica, 1);
  first.reset();  // the driver gave up on it: its call is no longer counted
  third.reset();
  for (const ReplicaSnapshot& s : reviewer().balancer.snapshot(t.clock.now())) {
    EXPECT_EQ(s.outstanding, 0);
  }
  EXPECT_EQ(reviewer().in_flight.load(), 0);
}

TEST_F(WorkflowReplicasTest, OneReplicaAgentsAreCalledAsBefore) {
  AgentRegistry single;
  AgentInfo a{.name = "a"};
  a.breaker.failure_threshold = 1000;  // its circuit stays closed: every task makes its calls
  ASSERT_TRUE(single.add(a).ok());
  Workflow wf(single, {}, t.env());
  Task k = task(1);
  k.agent = "a";
  invoker.failing[{"a", 0}] = typed(ErrorType::memory_exhausted);
  Outcome out = wf.run(k, invoker);
  EXPECT_THAT(invoker.replicas, ElementsAre(0));  // no other replica: fall back at once
  EXPECT_EQ(out.attempts[0].decision, "fallback");
  invoker.replicas.clear();
  invoker.failing[{"a", 0}] = Error::http(503);
  for (int i = 0; i < 10; ++i) wf.run(k, invoker);
  EXPECT_EQ(invoker.replicas.size(), 40u);  // every call on replica 0, four per task
  EXPECT_EQ(invoker.calls_to(0), 40);
  EXPECT_FALSE(single.find("a")->balancer.snapshot(t.clock.now())[0].ejected);
}

}  // namespace
}  // namespace mend
