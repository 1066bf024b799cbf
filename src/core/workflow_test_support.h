// Test support for the workflow's tests (workflow_*_test.cc): agents that answer from a script,
// an escalation sink that records, self-healing operations that succeed, and a fixture with four
// agents and the default chains on a manual clock.
#ifndef MEND_SRC_CORE_WORKFLOW_TEST_SUPPORT_H_
#define MEND_SRC_CORE_WORKFLOW_TEST_SUPPORT_H_

#include <gtest/gtest.h>

#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "mend/core/workflow.h"
#include "test_env.h"

namespace mend::workflow_test_support {

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

inline Error typed(ErrorType type, std::string message = "boom") {
  return Error::classified_as(type, default_severity(type), std::move(message));
}

class WorkflowTest : public ::testing::Test {
 protected:
  WorkflowTest() {
    add({.name = "senior-backend-developer", .capabilities = {"backend"}});
    add({.name = "senior-full-stack-developer", .capabilities = {"backend", "frontend"}});
    add({.name = "senior-ai-engineer", .capabilities = {"ai"}});
    add({.name = "agentzero-coordinator", .generalist = true});
    agents.set_chains(default_fallback_chains());
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

}  // namespace mend::workflow_test_support

#endif  // MEND_SRC_CORE_WORKFLOW_TEST_SUPPORT_H_
