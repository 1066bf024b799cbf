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
#include "generation_builder.h"
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
  return invoke_async(agent, replica, task, attempt, nullptr);
}

net::awaitable<Result<std::string>> DaemonInvoker::invoke_async(
    const AgentInfo& agent, int replica, const Task& task, int attempt,
    std::shared_ptr<CallCancel> cancel) {
  // The daemon's core, not this invoker, past the first suspension: see daemon_impl.h.
  DaemonCore& core = core_;
  AgentCounters& counters = core.counters(agent.name);
  // Named, not a temporary next to co_await: GCC 12 destroys such temporaries twice.
  auto invoked = inner_.invoke_async(agent, replica, task, attempt, cancel);
  co_await core.before_call(task);
  if (cancel != nullptr && cancel->cancelled()) {
    // Given up while it waited for the store: never sent (nor `invoked` started, whose invoker
    // may be gone by now).
    Error e = Error::of_kind("cancelled", "the call to agent '" + agent.name + "' was cancelled");
    e.stop = StopReason::cancelled;
    co_return e;
  }
  counters.calls.fetch_add(1, std::memory_order_relaxed);
  counters.calls_out.fetch_add(1, std::memory_order_relaxed);
  const TimePoint started = core.clock_.now();
  Result<std::string> result = co_await std::move(invoked);
  counters.calls_out.fetch_sub(1, std::memory_order_relaxed);
  counters.latency_ns.fetch_add((core.clock_.now() - started).count(), std::memory_order_relaxed);
  counters.calls_ended.fetch_add(1, std::memory_order_relaxed);
  const bool cancelled = !result.ok() && cancel != nullptr && cancel->cancelled();
  if (!result.ok() && !cancelled) counters.failures.fetch_add(1, std::memory_order_relaxed);
  core.m_.attempts
      ->with({agent.name, result.ok() ? "success" : (cancelled ? "cancelled" : "failure")})
      .inc();
  co_return result;
}

namespace {

// Each agent's breaker and balancer in `g` take up where `carry`'s are (DaemonCore::build).
void continue_agents(AgentRegistry& agents, const AgentRegistry& carry) {
  for (const std::string& name : agents.names()) {
    AgentRegistry::Entry* entry = agents.find(name);
    const AgentRegistry::Entry* before = carry.find(name);
    if (entry == nullptr || before == nullptr) continue;
    entry->breaker.continue_from(before->breaker);
    entry->last_failure.store(before->last_failure.load(std::memory_order_relaxed),
                              std::memory_order_relaxed);
    const std::vector<std::string>& urls = entry->info.endpoints;
    const std::vector<std::string>& before_urls = before->info.endpoints;
    std::vector<int> before_index(urls.size(), -1);
    for (std::size_t i = 0; i < urls.size(); ++i) {
      const auto at = std::find(before_urls.begin(), before_urls.end(), urls[i]);
      if (at != before_urls.end()) before_index[i] = static_cast<int>(at - before_urls.begin());
    }
    entry->balancer.continue_from(before->balancer, before_index);
  }
}

// The retry budgets of `carry`'s workflow, for the same agents in `options`.
void continue_budgets(WorkflowOptions& options, const WorkflowOptions& carry) {
  if (options.retry.budget && carry.retry.budget) options.retry.budget = carry.retry.budget;
  for (auto& [name, retry] : options.agent_retry) {
    auto before = carry.agent_retry.find(name);
    if (retry.budget && before != carry.agent_retry.end() && before->second.budget) {
      retry.budget = before->second.budget;
    }
  }
}

}  // namespace

Result<std::shared_ptr<Generation>> DaemonCore::build(const Config& config,
                                                      const Generation* carry) {
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

  // The replicas in service: a scale-up's replica joins once ready, a retiring one has left.
  std::map<std::string, std::vector<std::string>> endpoints = replicas_.endpoints();
  for (const AgentConfig& agent : config.agents) {
    AgentInfo info = agent_info_of(agent, endpoints[agent.name]);
    if (auto added = g->agents.add(std::move(info)); !added.ok()) return added.error();
    const std::string name = agent.name;
    g->agents.find(name)->breaker.add_listener([this, name](const CircuitTransition& t) {
      m_.transitions->with({name, std::string(to_string(t.to))}).inc();
      Event event;
      event.kind = EventKind::circuit_transition;
      event.source = name;
      event.from = t.from;
      event.to = t.to;
      event.detail = t.reason;
      publish("circuit_transition", workflow_event_json(event, clock_.wall_now()));
      // Why an agent stopped (or started again) taking traffic belongs in the log too: it is the
      // first thing an operator looks for.
      const bool stopped = t.to == CircuitState::open || t.to == CircuitState::isolated;
      log(stopped ? "warn" : "info", "circuit of " + name + " " + std::string(to_string(t.from)) +
                                         " -> " + std::string(to_string(t.to)) + ": " + t.reason);
    });
  }
  g->agents.set_chains(fallback_chains_of(config));
  if (carry != nullptr) continue_agents(g->agents, carry->agents);

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
  add_receivers(*g->dispatcher, config.escalation.receivers, *http_);

  AgentClientOptions client;
  client.task_timeout = config.policies.call_timeout;
  client.probe_timeout = std::chrono::seconds(1);
  g->operations = std::make_unique<DaemonAgentOperations>(*this, *http_, g->agents, client);
  g->invoker = std::make_unique<DaemonInvoker>(*this, *http_, client);

  WorkflowOptions wo = workflow_options_of(config);
  if (carry != nullptr && carry->workflow) continue_budgets(wo, carry->workflow->options());
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
