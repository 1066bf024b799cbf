#include "mend/core/agents.h"

#include <algorithm>
#include <mutex>
#include <set>
#include <stdexcept>

namespace mend {

std::map<std::string, std::vector<std::string>> default_fallback_chains() {
  return {
      {"senior-frontend-developer",
       {"senior-full-stack-developer", "code-generation-improver", "agentzero-coordinator"}},
      {"senior-backend-developer",
       {"senior-full-stack-developer", "senior-ai-engineer", "agentzero-coordinator"}},
      {"ollama-integration-specialist",
       {"senior-ai-engineer", "infrastructure-devops-manager", "agentzero-coordinator"}},
  };
}

std::string_view to_string(CandidateRole role) noexcept {
  switch (role) {
    case CandidateRole::primary:
      return "primary";
    case CandidateRole::chain:
      return "chain";
    case CandidateRole::capability:
      return "capability";
    case CandidateRole::generalist:
      return "generalist";
  }
  return "unknown";
}

std::string_view to_string(SkipReason reason) noexcept {
  switch (reason) {
    case SkipReason::unknown_agent:
      return "unknown_agent";
    case SkipReason::circuit_open:
      return "circuit_open";
    case SkipReason::unhealthy:
      return "unhealthy";
    case SkipReason::no_capacity:
      return "no_capacity";
  }
  return "unknown";
}

AgentRegistry::Entry::Entry(AgentInfo agent_info)
    : info(std::move(agent_info)),
      breaker(info.name, info.breaker),
      // Its refusals name it: "rate limiter 'rate_limit:<agent>' refused the call".
      rate_limiter(info.rate_limit
                       ? std::make_unique<RateLimiter>("rate_limit:" + info.name, *info.rate_limit)
                       : nullptr),
      balancer(info.replicas(), info.replica_balancing),
      hedging(info.hedging ? std::make_unique<HedgingPolicy>(*info.hedging) : nullptr) {}

Result<void> AgentRegistry::add(AgentInfo info) {
  auto config_error = [](std::string message) {
    return Result<void>(
        Error::classified_as(ErrorType::configuration_error, Severity::high, std::move(message)));
  };
  if (info.name.empty()) return config_error("agent name is empty");
  if (info.max_concurrent < 0) {
    return config_error("agent '" + info.name + "': max_concurrent must be >= 0");
  }
  std::unique_ptr<Entry> entry;
  try {
    entry = std::make_unique<Entry>(info);
  } catch (const std::invalid_argument& e) {
    return config_error("agent '" + info.name + "': " + e.what());
  }
  std::unique_lock lock(mu_);
  if (by_name_.contains(info.name)) {
    return config_error("agent '" + info.name + "' is registered twice");
  }
  by_name_.emplace(info.name, entry.get());
  entries_.push_back(std::move(entry));
  return {};
}

void AgentRegistry::set_chains(std::map<std::string, std::vector<std::string>> chains) {
  std::unique_lock lock(mu_);
  chains_.clear();
  for (auto& [primary, chain] : chains) chains_.emplace(primary, std::move(chain));
}

AgentRegistry::Entry* AgentRegistry::find(std::string_view name) {
  std::shared_lock lock(mu_);
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

const AgentRegistry::Entry* AgentRegistry::find(std::string_view name) const {
  return const_cast<AgentRegistry*>(this)->find(name);
}

std::vector<std::string> AgentRegistry::names() const {
  std::shared_lock lock(mu_);
  std::vector<std::string> out;
  out.reserve(entries_.size());
  for (const auto& e : entries_) out.push_back(e->info.name);
  return out;
}

std::size_t AgentRegistry::size() const {
  std::shared_lock lock(mu_);
  return entries_.size();
}

std::vector<Candidate> AgentRegistry::plan(
    std::string_view primary, const std::vector<std::string>& required_capabilities) const {
  std::shared_lock lock(mu_);
  std::vector<Candidate> out;
  std::set<std::string, std::less<>> seen;
  auto push = [&](const std::string& name, CandidateRole role) {
    if (seen.insert(name).second) out.push_back({name, role});
  };
  push(std::string(primary), CandidateRole::primary);
  if (auto it = chains_.find(primary); it != chains_.end()) {
    for (const auto& name : it->second) push(name, CandidateRole::chain);
  }
  // Without stated needs, the primary's own capabilities say what the task needs.
  std::vector<std::string> needed = required_capabilities;
  if (needed.empty()) {
    if (auto it = by_name_.find(primary); it != by_name_.end()) {
      needed = it->second->info.capabilities;
    }
  }
  if (!needed.empty()) {
    for (const auto& e : entries_) {
      const auto& caps = e->info.capabilities;
      const bool has_all = std::all_of(needed.begin(), needed.end(), [&](const std::string& c) {
        return std::find(caps.begin(), caps.end(), c) != caps.end();
      });
      if (has_all) push(e->info.name, CandidateRole::capability);
    }
  }
  for (const auto& e : entries_) {
    if (e->info.generalist) push(e->info.name, CandidateRole::generalist);
  }
  return out;
}

std::optional<SkipReason> AgentRegistry::unavailable_reason(std::string_view name) const {
  const Entry* e = find(name);
  if (e == nullptr) return SkipReason::unknown_agent;
  // An open circuit whose recovery timeout has passed admits a probe: that is for try_acquire()
  // to decide, so only isolation and a still-running open period count here.
  const CircuitState state = e->breaker.state();
  if (state == CircuitState::isolated) return SkipReason::circuit_open;
  if (e->health.load(std::memory_order_acquire) == HealthState::unhealthy) {
    return SkipReason::unhealthy;
  }
  if (e->info.max_concurrent > 0 &&
      e->in_flight.load(std::memory_order_acquire) >= e->info.max_concurrent) {
    return SkipReason::no_capacity;
  }
  return std::nullopt;
}

bool AgentRegistry::try_reserve(std::string_view name) {
  Entry* e = find(name);
  if (e == nullptr) return false;
  const int limit = e->info.max_concurrent;
  int current = e->in_flight.load(std::memory_order_relaxed);
  do {
    if (limit > 0 && current >= limit) return false;
  } while (!e->in_flight.compare_exchange_weak(current, current + 1, std::memory_order_acq_rel));
  return true;
}

void AgentRegistry::release(std::string_view name) {
  if (Entry* e = find(name)) e->in_flight.fetch_sub(1, std::memory_order_acq_rel);
}

void AgentRegistry::set_health(std::string_view name, HealthState state) {
  if (Entry* e = find(name)) e->health.store(state, std::memory_order_release);
}

}  // namespace mend
