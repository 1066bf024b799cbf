#include "generation_builder.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "mend/core/retry_budget.h"

namespace mend::server_detail {

AgentInfo agent_info_of(const AgentConfig& agent, const std::vector<std::string>& replica_urls) {
  AgentInfo info;
  info.name = agent.name;
  info.capabilities = agent.capabilities;
  info.generalist = agent.generalist;
  info.endpoints = agent.supervised() ? replica_urls : agent.urls;
  info.max_concurrent = agent.max_concurrent;
  if (agent.policies.bulkhead) {
    const int limit = agent.policies.bulkhead->max_concurrent;
    info.max_concurrent = info.max_concurrent == 0 ? limit : std::min(info.max_concurrent, limit);
  }
  // A scaled agent with a capacity per replica takes that many calls per replica in service: a
  // scale-up widens its bulkhead, a scale-down narrows it.
  if (agent.scaled() && agent.scaling->scaler.replica_capacity > 0) {
    const int limit = agent.scaling->scaler.replica_capacity * info.replicas();
    info.max_concurrent = info.max_concurrent == 0 ? limit : std::min(info.max_concurrent, limit);
  }
  info.breaker = agent.policies.breaker;
  info.replica_balancing = agent.policies.replica_balancing;
  // The workflow's attempt policy applies them (mend/core/attempt_policy.h); the relay takes its
  // call timeout from the same place.
  info.rate_limit = agent.policies.rate_limit;
  info.call_timeout = agent.policies.call_timeout;
  // The workflow hedges the task API's calls with it (mend/core/workflow.h); the relay builds a
  // policy of its own from the same options (relay.cc).
  info.hedging = agent.policies.hedging;
  return info;
}

std::map<std::string, std::vector<std::string>> fallback_chains_of(const Config& config) {
  std::map<std::string, std::vector<std::string>> chains;
  if (config.default_fallback_chains) chains = default_fallback_chains();
  for (const auto& [agent, chain] : config.fallback_chains) chains[agent] = chain;
  return chains;
}

WorkflowOptions workflow_options_of(const Config& config) {
  WorkflowOptions options;
  options.retry = config.policies.retry;
  if (config.policies.retry_budget) {
    options.retry.budget = std::make_shared<RetryBudget>(*config.policies.retry_budget);
  }
  for (const AgentConfig& agent : config.agents) {
    RetryOptions retry = agent.policies.retry;
    if (agent.policies.retry_budget) {
      retry.budget = std::make_shared<RetryBudget>(*agent.policies.retry_budget);
    }
    options.agent_retry[agent.name] = std::move(retry);
  }
  return options;
}

void add_receivers(NotificationDispatcher& dispatcher, const std::vector<ReceiverConfig>& receivers,
                   HttpClient& http) {
  for (const ReceiverConfig& r : receivers) {
    std::vector<HttpHeader> headers;
    for (const auto& [name, value] : r.headers) headers.push_back({name, value});
    if (r.kind == "webhook") {
      dispatcher.add_receiver(
          std::make_unique<WebhookReceiver>(r.name, http, r.url, std::move(headers)));
    } else if (r.kind == "slack") {
      dispatcher.add_receiver(std::make_unique<SlackReceiver>(r.name, http, r.url));
    } else if (r.kind == "pagerduty") {
      dispatcher.add_receiver(
          r.url.empty() ? std::make_unique<PagerDutyReceiver>(r.name, http, r.routing_key)
                        : std::make_unique<PagerDutyReceiver>(r.name, http, r.routing_key, r.url));
    } else if (r.kind == "file") {
      dispatcher.add_receiver(std::make_unique<FileReceiver>(r.name, r.path));
    }
  }
}

}  // namespace mend::server_detail
