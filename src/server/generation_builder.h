// How one configuration becomes the objects a generation runs with: what is derived from the
// configuration alone, as functions with no daemon around them. DaemonCore::build
// (daemon_generation.cc) wires their results together with the daemon's clock, store, HTTP client
// and event sinks.
//
//   AgentInfo info = agent_info_of(config.agents[0], replica_urls);  // breaker, limits, replicas
//   agents.set_chains(fallback_chains_of(config));
//   WorkflowOptions wo = workflow_options_of(config);   // a retry budget of its own per agent
//   add_receivers(dispatcher, config.escalation.receivers, http);
//
// Thread-safety: pure functions; add_receivers() changes only the dispatcher it is handed.
#ifndef MEND_SERVER_GENERATION_BUILDER_H_
#define MEND_SERVER_GENERATION_BUILDER_H_

#include <map>
#include <string>
#include <vector>

#include "mend/core/agents.h"
#include "mend/core/workflow.h"
#include "mend/runtime/http_client.h"
#include "mend/runtime/notifier.h"
#include "mend/server/config.h"

namespace mend::server_detail {

// The agent as the workflow sees it. `replica_urls`: where mend started its replicas (for a
// supervised agent; a URL agent's replicas are its configured urls). Its concurrency limit is
// the lower of max_concurrent and a bulkhead's max_concurrent, where both are set.
AgentInfo agent_info_of(const AgentConfig& agent, const std::vector<std::string>& replica_urls);

// The configured fallback chains, over the specification's three when the configuration asks
// for them (default_fallback_chains: true); a configured chain replaces a default one.
std::map<std::string, std::vector<std::string>> fallback_chains_of(const Config& config);

// The global retry policy and each agent's, each with a retry budget of its own where one is
// configured: one agent's outage must not spend another's budget. Sinks (degraded service,
// healer, escalations) are left for the caller to set.
WorkflowOptions workflow_options_of(const Config& config);

// A receiver per configured one, by kind (webhook, slack, pagerduty, file). HTTP receivers send
// through `http`, which must outlive the dispatcher.
void add_receivers(NotificationDispatcher& dispatcher, const std::vector<ReceiverConfig>& receivers,
                   HttpClient& http);

}  // namespace mend::server_detail

#endif  // MEND_SERVER_GENERATION_BUILDER_H_
