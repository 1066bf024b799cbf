// One configuration's generation (daemon_impl.h): the agents, policies, escalation and the
// invoker wired together, built at start and at each reload; the invoker that counts calls;
// self-healing's operations on the daemon's agents.

// clang-format off
#include <utility>  // before Asio's coroutine headers: Boost 1.74's awaitable.hpp forgets it
// clang-format on

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include "daemon_impl.h"
#include "relay.h"

namespace mend::server_detail {

namespace net = boost::asio;
using nlohmann::json;

// --- Agent operations and invoker ------------------------------------------------------------

DaemonAgentOperations::DaemonAgentOperations(DaemonCore& core, HttpClient& http,
                                             AgentRegistry& agents, AgentClientOptions options)
    // The system clock, not the daemon's: its waits are real sleeps, and must be measured by the
    // clock they really take.
    : HttpAgentOperations(http, agents, SystemClock::instance(), SystemSleeper::instance(),
                          std::move(options)),
      core_(core),
      http_(http) {}

Result<void> DaemonAgentOperations::reset_connection_pools(const std::string& agent) {
  // mend's own side first: pooled connections to a wedged agent are as stale as its own.
  http_.close_idle_connections();
  return HttpAgentOperations::reset_connection_pools(agent);
}

Result<void> DaemonAgentOperations::wait_until_ready(const std::string& agent, Duration timeout) {
  if (core_.supervision_closed_.load()) {
    return Error::of_kind("configuration",
                          "mend is shutting down: agent '" + agent + "' will not become ready");
  }
  return HttpAgentOperations::wait_until_ready(agent, timeout);
}

Result<void> DaemonAgentOperations::restart(const std::string& agent, bool graceful) {
  if (std::optional<Result<void>> restarted = core_.restart_agent(agent, graceful, "recovery")) {
    return *restarted;
  }
  // Not supervised: the agent's own restart hook.
  return HttpAgentOperations::restart(agent, graceful);
}

DaemonInvoker::DaemonInvoker(DaemonCore& core, HttpClient& http, AgentClientOptions options)
    : core_(core), inner_(http, std::move(options)) {}

net::awaitable<Result<std::string>> DaemonInvoker::invoke_async(const AgentInfo& agent, int replica,
                                                                const Task& task, int attempt) {
  AgentCounters& counters = core_.counters(agent.name);
  co_await core_.before_call(task);
  counters.calls.fetch_add(1, std::memory_order_relaxed);
  // Named, not a temporary next to co_await: GCC 12 destroys such temporaries twice.
  auto invoked = inner_.invoke_async(agent, replica, task, attempt);
  Result<std::string> result = co_await std::move(invoked);
  if (!result.ok()) counters.failures.fetch_add(1, std::memory_order_relaxed);
  core_.m_.attempts->with({agent.name, result.ok() ? "success" : "failure"}).inc();
  co_return result;
}

Result<std::shared_ptr<Generation>> DaemonCore::build(const Config& config) {
  auto g = std::make_shared<Generation>();
  g->config = config;
  for (const RuleSpec& rule : config.classifier_rules) {
    if (auto added = g->classifier.add(rule); !added.ok()) return added.error();
  }
  g->classifier.add_standard_rules();
  g->env.clock = &clock_;
  g->env.random = &random_;
  g->env.classifier = &g->classifier;
  g->env.events = &event_sink_;

  std::map<std::string, std::vector<std::string>> endpoints;
  for (const Replica& r : replicas_.snapshot()) endpoints[r.agent].push_back(r.url);
  for (const AgentConfig& agent : config.agents) {
    AgentInfo info;
    info.name = agent.name;
    info.capabilities = agent.capabilities;
    info.generalist = agent.generalist;
    info.endpoints = agent.supervised() ? endpoints[agent.name] : agent.urls;
    info.max_concurrent = agent.max_concurrent;
    if (agent.policies.bulkhead) {
      int limit = agent.policies.bulkhead->max_concurrent;
      info.max_concurrent = info.max_concurrent == 0 ? limit : std::min(info.max_concurrent, limit);
    }
    info.breaker = agent.policies.breaker;
    // The workflow's attempt policy applies them (mend/core/attempt_policy.h); the relay takes
    // its call timeout from the same place.
    info.rate_limit = agent.policies.rate_limit;
    info.call_timeout = agent.policies.call_timeout;
    if (auto added = g->agents.add(std::move(info)); !added.ok()) return added.error();
    const std::string name = agent.name;
    g->agents.find(name)->breaker.add_listener([this, name](const CircuitTransition& t) {
      m_.transitions->with({name, std::string(to_string(t.to))}).inc();
      json j = {{"kind", "circuit_transition"},
                {"at", to_iso8601(clock_.wall_now())},
                {"source", name},
                {"from", to_string(t.from)},
                {"to", to_string(t.to)},
                {"detail", t.reason}};
      publish("circuit_transition", j.dump(-1, ' ', false, json::error_handler_t::replace));
      // Why an agent stopped (or started again) taking traffic belongs in the log too: it is the
      // first thing an operator looks for.
      const bool stopped = t.to == CircuitState::open || t.to == CircuitState::isolated;
      log(stopped ? "warn" : "info", "circuit of " + name + " " + std::string(to_string(t.from)) +
                                         " -> " + std::string(to_string(t.to)) + ": " + t.reason);
    });
  }
  std::map<std::string, std::vector<std::string>> chains;
  if (config.default_fallback_chains) chains = default_fallback_chains();
  for (const auto& [agent, chain] : config.fallback_chains) chains[agent] = chain;
  g->agents.set_chains(std::move(chains));

  g->degraded = std::make_unique<DegradedService>(config.degradation);
  SelfHealingOptions healing;
  healing.ready_timeout = config.supervision.ready_timeout;
  g->healer = std::make_unique<SelfHealer>(healing);
  EscalatorOptions escalation;
  escalation.policy = config.escalation.policy;
  escalation.routes = config.escalation.routes;
  try {
    g->escalator = std::make_unique<Escalator>(*store_, clock_, escalation);
  } catch (const std::exception& e) {
    return Error::of_kind("configuration", std::string("escalation: ") + e.what());
  }
  g->escalations = std::make_unique<BackloggedEscalations>(*escalation_backlog_, *g->escalator);
  g->dispatcher = std::make_unique<NotificationDispatcher>(*store_, clock_, random_);
  for (const ReceiverConfig& r : config.escalation.receivers) {
    std::vector<HttpHeader> headers;
    for (const auto& [name, value] : r.headers) headers.push_back({name, value});
    if (r.kind == "webhook") {
      g->dispatcher->add_receiver(
          std::make_unique<WebhookReceiver>(r.name, *http_, r.url, std::move(headers)));
    } else if (r.kind == "slack") {
      g->dispatcher->add_receiver(std::make_unique<SlackReceiver>(r.name, *http_, r.url));
    } else if (r.kind == "pagerduty") {
      g->dispatcher->add_receiver(
          r.url.empty()
              ? std::make_unique<PagerDutyReceiver>(r.name, *http_, r.routing_key)
              : std::make_unique<PagerDutyReceiver>(r.name, *http_, r.routing_key, r.url));
    } else if (r.kind == "file") {
      g->dispatcher->add_receiver(std::make_unique<FileReceiver>(r.name, r.path));
    }
  }

  AgentClientOptions client;
  client.task_timeout = config.policies.call_timeout;
  client.probe_timeout = std::chrono::seconds(1);
  g->operations = std::make_unique<DaemonAgentOperations>(*this, *http_, g->agents, client);
  g->invoker = std::make_unique<DaemonInvoker>(*this, *http_, client);

  WorkflowOptions wo;
  wo.retry = config.policies.retry;
  if (config.policies.retry_budget) {
    wo.retry.budget = std::make_shared<RetryBudget>(*config.policies.retry_budget);
  }
  for (const AgentConfig& agent : config.agents) {
    RetryOptions retry = agent.policies.retry;
    // Each agent gets a budget of its own: one agent's outage must not starve the others.
    if (agent.policies.retry_budget) {
      retry.budget = std::make_shared<RetryBudget>(*agent.policies.retry_budget);
    }
    wo.agent_retry[agent.name] = std::move(retry);
  }
  wo.degraded = g->degraded.get();
  wo.healer = g->healer.get();
  wo.escalations = g->escalations.get();
  // No journal here: each task's journal entry is written with its outcome (finish_task).
  const int max_agents = wo.max_agents;
  g->workflow = std::make_unique<Workflow>(g->agents, std::move(wo), g->env);
  for (const RelayConfig& relay : boot_config_.relays) {
    g->relay_routes.push_back(build_relay_route(*this, *g, relay.agent, max_agents));
  }
  return g;
}

Result<void> DaemonCore::reload(const std::string& path) {
  MutexLock serial(reload_mu_);
  std::shared_ptr<Generation> old = current();
  std::string file = path.empty() && old ? old->config.source_path : path;
  if (file.empty()) return Error::of_kind("configuration", "no configuration file to reload");
  ConfigLoad load = load_config_file(file);
  auto& family = *m_.reloads;
  if (!load.ok()) {
    std::string message = "the new configuration is invalid; keeping the running one:";
    for (const ConfigProblem& p : load.problems) message += "\n  " + p.to_string();
    family.with({"invalid"}).inc();
    log("error", message);
    return Error::of_kind("configuration", message);
  }
  // What mend serve says at start (former names, a world-readable token) it says on reload too.
  for (const std::string& warning : load.warnings) log("warn", warning);
  if (auto replicas = start_replicas(*load.config, /*first=*/false); !replicas.ok()) {
    family.with({"failed"}).inc();
    return replicas;
  }
  Result<std::shared_ptr<Generation>> g = build(*load.config);
  if (!g.ok()) {
    family.with({"failed"}).inc();
    return g.error();
  }
  set_generation(*g);
  replicas_.report_health();
  family.with({"applied"}).inc();
  log("info", "configuration reloaded from " + file);
  publish(
      "config_reloaded",
      json({{"kind", "config_reloaded"}, {"at", to_iso8601(clock_.wall_now())}, {"source", file}})
          .dump(-1, ' ', false, json::error_handler_t::replace));
  return {};
}

}  // namespace mend::server_detail
