// File: mend/core/agents.h
//
// The agents mend knows, whether each can take work right now, and the order in which to try
// them for a task: the specification's AgentFallbackManager, made explicit.
//
//   mend::AgentRegistry agents;
//   agents.add({.name = "senior-backend-developer", .capabilities = {"backend", "code_review"}});
//   agents.add({.name = "agentzero-coordinator", .generalist = true});
//   agents.set_chains(mend::default_fallback_chains());
//   for (const mend::Candidate& c : agents.plan("senior-backend-developer", {"code_review"}))
//     if (auto why_not = agents.unavailable_reason(c.agent)) ...  // skip, say why
//
// A plan lists, without repeats: the primary agent, its explicit chain, the other agents that
// have every capability the task needs (registration order), then the generalists. Degraded
// service comes after the plan (mend/core/degradation.h); the workflow (mend/core/workflow.h) walks
// it. Whether an agent is available is asked at the moment it would be tried, not when the plan is
// made: a circuit can open while the primary is being retried.
//
// Each agent has its own circuit breaker, health state and in-flight count, and when configured its
// own rate limiter and call timeout: what mend::AttemptPolicy (mend/core/attempt_policy.h) admits
// a call to it with. Its replicas (AgentInfo::endpoints) share that breaker; which replica takes a
// call is its ReplicaBalancer's choice (mend/core/replica_balancer.h): the less busy of two, with
// replicas whose own calls keep failing ejected for a while. An agent is unavailable when its
// circuit is open or isolated, its health is unhealthy, or it is at max_concurrent. (A rate
// limiter's refusal is not a skip: the workflow retries it after the limiter's wait, as it would
// the agent's own 429.) An agent with AgentInfo::hedging has its HedgingPolicy here too
// (Entry::hedging): the workflow's call steps carry its delay (WorkflowStep::hedge_after).
//
// Thread-safety: all methods are safe to call from many threads at once. Agents are added and
// chains set before tasks run, typically; adding later is safe but plans made earlier do not see
// the new agent.
#ifndef MEND_CORE_AGENTS_H_
#define MEND_CORE_AGENTS_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "mend/core/circuit_breaker.h"
#include "mend/core/clock.h"
#include "mend/core/health.h"
#include "mend/core/hedging.h"
#include "mend/core/rate_limiter.h"
#include "mend/core/replica_balancer.h"
#include "mend/core/result.h"

namespace mend {

struct AgentInfo {
  std::string name;
  std::vector<std::string> capabilities;
  bool generalist = false;  // takes any task when the specialists could not
  // Base URLs of the agent's replicas ("http://127.0.0.1:8101"). Calls are spread over them (the
  // agent's ReplicaBalancer); a task's retry goes to a replica it has not failed on when there is
  // one, and a resource error moves to one at once, before the workflow falls back to another
  // agent. In-process agents may leave it empty (one implicit replica).
  std::vector<std::string> endpoints;
  int max_concurrent = 0;         // tasks in flight at once; 0: unlimited
  CircuitBreakerOptions breaker;  // the specification's: 5 failures, 60 s, 3 successes
  std::optional<RateLimiterOptions> rate_limit;  // calls to it; absent: no rate limit
  // The time one call may take, unless the task sets its own attempt_timeout; absent: the
  // invoker's default (AgentClientOptions::task_timeout over HTTP).
  std::optional<Duration> call_timeout;
  // How calls are spread over the replicas and when one is ejected (Envoy's defaults, mostly).
  ReplicaBalancerOptions replica_balancing;
  // Hedged calls (mend/core/hedging.h): a call to one replica that has not answered after the
  // delay is also sent to another one, and the first answer wins. Only for the task types it
  // names, and only for an agent with at least two replicas; absent (the default): none. The
  // async driver hedges (mend/runtime/async_workflow.h); the synchronous one does not.
  std::optional<HedgingOptions> hedging;

  int replicas() const noexcept {
    return endpoints.empty() ? 1 : static_cast<int>(endpoints.size());
  }
};

// The specification's three chains: frontend, backend and ollama-integration-specialist.
std::map<std::string, std::vector<std::string>> default_fallback_chains();

enum class CandidateRole : std::uint8_t { primary, chain, capability, generalist };
std::string_view to_string(CandidateRole role) noexcept;

struct Candidate {
  std::string agent;
  CandidateRole role = CandidateRole::primary;
};

// Why an agent was passed over.
enum class SkipReason : std::uint8_t { unknown_agent, circuit_open, unhealthy, no_capacity };
std::string_view to_string(SkipReason reason) noexcept;

struct SkippedAgent {
  std::string agent;
  CandidateRole role = CandidateRole::primary;
  SkipReason reason = SkipReason::unknown_agent;
};

class AgentRegistry {
 public:
  // The state mend keeps per agent. Owned by the registry; pointers stay valid for its lifetime.
  struct Entry {
    explicit Entry(AgentInfo agent_info);
    const AgentInfo info;
    CircuitBreaker breaker;
    const std::unique_ptr<RateLimiter> rate_limiter;  // from info.rate_limit; null: none
    ReplicaBalancer balancer;  // which replica takes a call; info.replicas() of them
    // From info.hedging; null: no hedging. Its latency window hears every call that answered.
    const std::unique_ptr<HedgingPolicy> hedging;
    std::atomic<HealthState> health{HealthState::unknown};
    std::atomic<int> in_flight{0};
    // The type and severity of its last failed call (encode_failure), 0 when none: a task that
    // skips it because of that outage (circuit open, unhealthy) escalates as the failures did,
    // so that it counts as an occurrence of the outage's record.
    std::atomic<std::uint32_t> last_failure{0};
    static std::uint32_t encode_failure(ErrorType type, Severity severity) noexcept {
      return 1u + static_cast<std::uint32_t>(type) * 8u + static_cast<std::uint32_t>(severity);
    }
  };

  AgentRegistry() = default;
  AgentRegistry(const AgentRegistry&) = delete;
  AgentRegistry& operator=(const AgentRegistry&) = delete;

  // Errors (configuration_error): empty or duplicate name, invalid breaker, rate limit or replica
  // balancing options.
  Result<void> add(AgentInfo info);
  // Replaces all chains. Names in chains that are not registered are skipped when planning (as
  // unknown_agent), so a chain may be configured before all its agents exist.
  void set_chains(std::map<std::string, std::vector<std::string>> chains);

  Entry* find(std::string_view name);
  const Entry* find(std::string_view name) const;
  std::vector<std::string> names() const;  // registration order
  std::size_t size() const;

  std::vector<Candidate> plan(std::string_view primary,
                              const std::vector<std::string>& required_capabilities) const;

  // nullopt when the agent can take a task now.
  std::optional<SkipReason> unavailable_reason(std::string_view name) const;

  // Capacity. try_reserve() fails when the agent is at max_concurrent; release() undoes it.
  bool try_reserve(std::string_view name);
  void release(std::string_view name);

  void set_health(std::string_view name, HealthState state);

 private:
  mutable std::shared_mutex mu_;
  std::vector<std::unique_ptr<Entry>> entries_;  // registration order
  std::map<std::string, Entry*, std::less<>> by_name_;
  std::map<std::string, std::vector<std::string>, std::less<>> chains_;
};

}  // namespace mend

#endif  // MEND_CORE_AGENTS_H_
