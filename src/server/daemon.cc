#include "mend/daemon.h"

// clang-format off
#include <utility>  // before Asio's coroutine headers: Boost 1.74's awaitable.hpp forgets it
// clang-format on

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <csignal>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "daemon_impl.h"
#include "mend/async_workflow.h"
#include "relay.h"

namespace mend {
namespace server_detail {
namespace {

namespace net = boost::asio;
using nlohmann::json;

constexpr Duration kProbeTick = std::chrono::milliseconds(100);

// Free loopback ports for supervised agents, distinct from each other and from `taken`. The
// sockets that found them stay open until all are found, or the system could hand out the same
// port twice. The agents bind them moments later; another process could take one in between, in
// which case that agent fails its startup and is restarted on the same port.
Result<std::vector<unsigned short>> free_loopback_ports(std::size_t count,
                                                        const std::set<unsigned short>& taken) {
  std::vector<int> sockets;
  std::vector<unsigned short> ports;
  auto close_all = [&] {
    for (int fd : sockets) ::close(fd);
  };
  for (int tries = 0; ports.size() < count && tries < 1000; ++tries) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      int err = errno;
      close_all();
      return Error::from_code({err, std::system_category()},
                              "cannot open a socket to find a free port");
    }
    sockets.push_back(fd);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      int err = errno;
      close_all();
      return Error::from_code({err, std::system_category()}, "cannot find a free loopback port");
    }
    const auto port = static_cast<unsigned short>(ntohs(addr.sin_port));
    if (!taken.count(port)) ports.push_back(port);
  }
  close_all();
  if (ports.size() < count) return Error::of_kind("configuration", "no free loopback ports left");
  return ports;
}

double seconds(Duration d) {
  return std::chrono::duration<double>(d).count();
}

std::string format_seconds(Duration d) {
  return fmt::format("{:g} s", seconds(d));
}

std::string substitute_port(std::string text, unsigned short port) {
  const std::string token = "{port}";
  for (std::size_t at = text.find(token); at != std::string::npos; at = text.find(token, at + 1)) {
    text.replace(at, token.size(), std::to_string(port));
  }
  return text;
}

// What decides whether a supervised agent's processes must be replaced on reload.
bool same_process(const AgentConfig& a, const AgentConfig& b) {
  return a.command == b.command && a.args == b.args && a.env == b.env &&
         a.working_dir == b.working_dir && a.replicas == b.replicas &&
         a.stop_timeout == b.stop_timeout;
}

// Counts a background loop as running for its lifetime.
struct LoopGuard {
  explicit LoopGuard(std::atomic<int>& count) : count_(count) { count_.fetch_add(1); }
  ~LoopGuard() { count_.fetch_sub(1); }
  std::atomic<int>& count_;
};

}  // namespace

// --- Agent operations and invoker ------------------------------------------------------------

void WorkflowEventSink::emit(const Event& event) noexcept {
  try {
    core_.on_workflow_event(event);
  } catch (...) {
    // Metrics and the event stream must never fail a task.
  }
}

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

void DaemonInvoker::configure(const AgentConfig& agent) {
  call_timeouts_[agent.name] = agent.policies.call_timeout;
  if (agent.policies.rate_limit) {
    rate_limits_[agent.name] =
        std::make_unique<RateLimiter>("rate_limit:" + agent.name, *agent.policies.rate_limit);
  }
}

net::awaitable<Result<std::string>> DaemonInvoker::invoke_async(const AgentInfo& agent, int replica,
                                                                const Task& task, int attempt) {
  AgentCounters& counters = core_.counters(agent.name);
  if (auto it = rate_limits_.find(agent.name); it != rate_limits_.end()) {
    RateLimiter::Decision decision = it->second->try_acquire(core_.clock().now());
    if (!decision.allowed) co_return it->second->rejection(decision);
  }
  co_await core_.before_call(task);
  counters.calls.fetch_add(1, std::memory_order_relaxed);
  Result<std::string> result =
      Error::classified_as(ErrorType::processing_failed, Severity::medium, "not called");
  auto timeout = call_timeouts_.find(agent.name);
  if (!task.attempt_timeout && timeout != call_timeouts_.end()) {
    Task with_timeout = task;
    with_timeout.attempt_timeout = timeout->second;
    result = co_await inner_.invoke_async(agent, replica, with_timeout, attempt);
  } else {
    result = co_await inner_.invoke_async(agent, replica, task, attempt);
  }
  if (!result.ok()) counters.failures.fetch_add(1, std::memory_order_relaxed);
  core_.m_.attempts->with({agent.name, result.ok() ? "success" : "failure"}).inc();
  co_return result;
}

// --- Construction and configuration ----------------------------------------------------------

DaemonCore::DaemonCore(Config config, DaemonOptions options)
    : boot_config_(std::move(config)),
      options_(std::move(options)),
      clock_(options_.clock != nullptr ? *options_.clock : SystemClock::instance()),
      random_(options_.random != nullptr ? *options_.random : SeededRandom::system()) {
  register_metrics();
}

DaemonCore::~DaemonCore() {
  stop();
  if (started_ && !finished_) wait();
}

void DaemonCore::log(std::string_view level, const std::string& line) {
  if (options_.log) {
    options_.log(level, line);
    return;
  }
  if (level == "error") {
    spdlog::error("{}", line);
  } else if (level == "warn") {
    spdlog::warn("{}", line);
  } else {
    spdlog::info("{}", line);
  }
}

void DaemonCore::publish(const std::string& kind, const std::string& body) {
  events_.publish(kind, body);
}

AgentCounters& DaemonCore::counters(const std::string& agent) {
  std::lock_guard<std::mutex> lock(counters_mu_);
  auto& slot = counters_[agent];
  if (!slot) slot = std::make_unique<AgentCounters>();
  return *slot;
}

void DaemonCore::set_generation(std::shared_ptr<Generation> g) {
  std::lock_guard<std::mutex> lock(generation_mu_);
  generation_ = std::move(g);
  generation_number_.fetch_add(1, std::memory_order_release);
}

std::shared_ptr<Generation> DaemonCore::current() const {
  std::lock_guard<std::mutex> lock(generation_mu_);
  return generation_;
}

std::string DaemonCore::base_url() const {
  return server_ ? server_->base_url() : std::string();
}

void DaemonCore::register_metrics() {
  m_.tasks = &metrics.counter("mend_tasks_total", "Tasks finished, by outcome.", {"outcome"});
  m_.latency =
      &metrics.histogram("mend_task_duration_seconds", "Task latency from submission to outcome.",
                         {"outcome"}, default_latency_buckets());
  m_.in_flight = &metrics.gauge("mend_tasks_in_flight", "Tasks running now.", {});
  m_.attempts = &metrics.counter("mend_attempts_total", "Calls to agents, by agent and result.",
                                 {"agent", "result"});
  m_.retries = &metrics.counter("mend_retries_total", "Retries scheduled, by agent.", {"agent"});
  m_.fallbacks = &metrics.counter("mend_fallbacks_total",
                                  "Tasks answered by a fallback agent, by that agent.", {"agent"});
  m_.degraded = &metrics.counter("mend_degraded_answers_total",
                                 "Tasks answered by the degraded service.", {"task_type"});
  m_.escalations = &metrics.counter("mend_escalations_total",
                                    "Escalations carried out, by severity.", {"severity"});
  m_.transitions = &metrics.counter("mend_circuit_transitions_total",
                                    "Circuit breaker transitions.", {"agent", "to"});
  m_.restarts = &metrics.counter("mend_agent_restarts_total", "Restarts of supervised agents.",
                                 {"agent", "reason"});
  m_.notifications = &metrics.counter("mend_notifications_total",
                                      "Notification deliveries, by result.", {"result"});
  m_.reloads = &metrics.counter("mend_config_reloads_total", "Configuration reloads, by result.",
                                {"result"});
  m_.relay_requests = &metrics.counter("mend_relay_requests_total",
                                       "Requests through a relay, by its agent and how they ended.",
                                       {"relay", "outcome"});
  metrics.gauge_callback("mend_circuit_state",
                         "Circuit state per agent: 0 closed, 1 half-open, 2 open, 3 isolated.",
                         {"agent"}, [this] {
                           std::vector<Sample> samples;
                           if (auto g = current()) {
                             for (const std::string& name : g->agents.names()) {
                               const CircuitState s = g->agents.find(name)->breaker.state();
                               double v = s == CircuitState::closed      ? 0
                                          : s == CircuitState::half_open ? 1
                                          : s == CircuitState::open      ? 2
                                                                         : 3;
                               samples.push_back({{name}, v});
                             }
                           }
                           return samples;
                         });
  metrics.gauge_callback("mend_agent_ready_replicas", "Replicas of each agent that are ready.",
                         {"agent"}, [this] {
                           std::map<std::string, double> ready;
                           std::lock_guard<std::mutex> lock(replicas_mu_);
                           for (const Replica& r : replicas_)
                             ready[r.agent] += r.health.is_ready() ? 1 : 0;
                           std::vector<Sample> samples;
                           for (const auto& [agent, n] : ready) samples.push_back({{agent}, n});
                           return samples;
                         });
  metrics.gauge_callback("mend_agent_rss_bytes", "Resident memory of each supervised replica.",
                         {"process"}, [this] {
                           std::vector<Sample> samples;
                           if (!supervisor_) return samples;
                           for (const ProcessStatus& s : supervisor_->statuses()) {
                             samples.push_back({{s.name}, static_cast<double>(s.rss_bytes)});
                           }
                           return samples;
                         });
  // task_writer_ is set in start(), before the server that scrapes these exists.
  metrics.counter_callback(
      "mend_store_task_writes_total",
      "Changes of tasks (accepted, waiting, calling, finished with their journal entry) written "
      "to the store, by result: written, failed (a try the store refused: a full disk, ...; "
      "retries included), dropped (given up: too many waited for a retry).",
      {"result"}, [this] {
        if (!task_writer_) return std::vector<Sample>{};
        const TaskWriter::Health h = task_writer_->health();
        return std::vector<Sample>{{{"written"}, static_cast<double>(h.written)},
                                   {{"failed"}, static_cast<double>(h.failed_tries)},
                                   {{"dropped"}, static_cast<double>(h.dropped)}};
      });
  metrics.gauge_callback(
      "mend_store_task_writes_pending_retry",
      "Changes of tasks the store refused, kept in memory and written again with backoff.", {},
      [this] {
        if (!task_writer_) return std::vector<Sample>{};
        return std::vector<Sample>{{{}, static_cast<double>(task_writer_->health().retry_pending)}};
      });
  metrics.counter_callback(
      "mend_store_escalation_writes_total",
      "Escalations (tickets and incidents with their notifications) the store refused, by what "
      "became of them: deferred (kept in memory), written_late (written by a retry), dropped "
      "(given up: too many fingerprints waited); and failed: retries the store refused.",
      {"result"}, [this] {
        if (!escalation_backlog_) return std::vector<Sample>{};
        const EscalationBacklog::Stats s = escalation_backlog_->stats();
        return std::vector<Sample>{{{"deferred"}, static_cast<double>(s.deferred)},
                                   {{"written_late"}, static_cast<double>(s.written_late)},
                                   {{"dropped"}, static_cast<double>(s.dropped)},
                                   {{"failed"}, static_cast<double>(s.failed_tries)}};
      });
  metrics.gauge_callback(
      "mend_store_escalations_pending_retry",
      "Escalations the store refused, kept in memory and written again with backoff.", {}, [this] {
        if (!escalation_backlog_) return std::vector<Sample>{};
        return std::vector<Sample>{
            {{}, static_cast<double>(escalation_backlog_->stats().pending_occurrences)}};
      });
  metrics.gauge_callback(
      "mend_event_stream_clients", "Clients following GET /v1/events.", {}, [this] {
        return std::vector<Sample>{{{}, static_cast<double>(events_.subscribers())}};
      });
}

void DaemonCore::on_workflow_event(const Event& event) {
  switch (event.kind) {
    case EventKind::retry_scheduled:
      if (!event.task_id.empty()) task_waiting(event.task_id);
      m_.retries->with({event.source}).inc();
      counters(event.source).retries.fetch_add(1, std::memory_order_relaxed);
      break;
    case EventKind::fallback_used:
      m_.fallbacks->with({event.source}).inc();
      counters(event.source).answered_as_fallback.fetch_add(1, std::memory_order_relaxed);
      break;
    default:
      break;
  }
  json j = {{"kind", to_string(event.kind)},
            {"at", to_iso8601(clock_.wall_now())},
            {"source", event.source}};
  if (!event.task_id.empty()) j["task_id"] = event.task_id;
  if (event.kind == EventKind::attempt_failed || event.kind == EventKind::retry_scheduled ||
      event.kind == EventKind::gave_up) {
    j["attempt"] = event.attempt;
    j["error_type"] = to_string(event.error_type);
    j["severity"] = to_string(event.severity);
  }
  if (event.delay.count() > 0) j["delay_seconds"] = seconds(event.delay);
  if (event.kind == EventKind::circuit_transition) {
    j["from"] = to_string(event.from);
    j["to"] = to_string(event.to);
  }
  if (!event.detail.empty()) j["detail"] = event.detail;
  publish(std::string(to_string(event.kind)),
          j.dump(-1, ' ', false, json::error_handler_t::replace));
}

void DaemonCore::on_store_health(const std::string& error) {
  std::lock_guard<std::mutex> lock(store_health_mu_);
  const bool failing = task_writes_failing_.load() || escalation_writes_failing_.load();
  if (failing == store_failing_.load()) return;
  store_failing_.store(failing);
  if (failing) {
    log("error", "the store refuses writes (" + error +
                     "): tasks' changes and escalations are kept in memory and written again "
                     "until it takes them; new tasks are refused; /readyz says not ready");
  } else {
    log("info",
        "the store takes writes again; every kept change of a task and every kept escalation is "
        "written");
  }
  publish(failing ? "store_failing" : "store_recovered",
          json({{"kind", failing ? "store_failing" : "store_recovered"},
                {"at", to_iso8601(clock_.wall_now())},
                {"source", "store"},
                {"detail", error}})
              .dump(-1, ' ', false, json::error_handler_t::replace));
}

void DaemonCore::retry_escalations(Generation& g, bool now) {
  EscalationBacklog::Pass pass =
      now ? escalation_backlog_->retry_now(*g.escalator) : escalation_backlog_->retry(*g.escalator);
  if (pass.written == 0) return;
  std::string records;
  for (const EscalationTaken& t : pass.records) {
    m_.escalations->with({std::string(to_string(t.level))}).inc();
    if (!records.empty()) records += ", ";
    records += t.record + " (" + std::to_string(t.occurrences) + " occurrences)";
  }
  log("warn", "wrote " + std::to_string(pass.written) +
                  " escalations kept while the store refused writes: " + records);
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
  {
    std::lock_guard<std::mutex> lock(replicas_mu_);
    for (const Replica& r : replicas_) endpoints[r.agent].push_back(r.url);
  }
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
  if (config.seed_fallback_chains) chains = seed_fallback_chains();
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
  for (const AgentConfig& agent : config.agents) g->invoker->configure(agent);

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

// --- Supervision -----------------------------------------------------------------------------

Result<void> DaemonCore::start_replicas(const Config& config, bool first) {
  if (supervision_closed_.load()) return Error::of_kind("configuration", "mend is shutting down");
  std::vector<Replica> keep;
  std::vector<std::string> to_stop;
  std::shared_ptr<Generation> old = first ? nullptr : current();
  {
    std::lock_guard<std::mutex> lock(replicas_mu_);
    for (Replica& r : replicas_) {
      const AgentConfig* now = config.agent(r.agent);
      const AgentConfig* before = old ? old->config.agent(r.agent) : nullptr;
      bool unchanged =
          now != nullptr && before != nullptr && now->supervised() == before->supervised() &&
          (now->supervised() ? same_process(*now, *before) : now->urls == before->urls);
      if (unchanged) {
        r.probes = now->probes;
        r.health.reconfigure(now->probes);
        r.memory_limit = now->memory_limit_bytes;
        keep.push_back(r);
      } else if (!r.process.empty()) {
        to_stop.push_back(r.process);
      }
    }
  }
  // Stop in reverse order of start, as at shutdown.
  for (auto it = to_stop.rbegin(); it != to_stop.rend(); ++it) {
    (void)supervisor_->remove(*it);
  }

  std::vector<Replica> added;
  std::vector<ProcessSpec> specs;
  for (const AgentConfig& agent : config.agents) {
    bool have = std::any_of(keep.begin(), keep.end(),
                            [&](const Replica& r) { return r.agent == agent.name; });
    if (have) continue;
    const int replicas = agent.supervised() ? agent.replicas : static_cast<int>(agent.urls.size());
    std::vector<unsigned short> ports;
    if (agent.supervised()) {
      std::set<unsigned short> taken;
      for (const Replica& r : keep) taken.insert(r.port);
      for (const Replica& r : added) taken.insert(r.port);
      Result<std::vector<unsigned short>> found =
          free_loopback_ports(static_cast<std::size_t>(replicas), taken);
      if (!found.ok()) return found.error();
      ports = std::move(*found);
    }
    for (int i = 0; i < replicas; ++i) {
      Replica r;
      r.agent = agent.name;
      r.index = i;
      r.epoch = next_epoch_++;
      r.probes = agent.probes;
      // Agents mend does not start are ready until a probe says otherwise.
      r.health = ReplicaProbes(agent.probes, agent.supervised());
      r.memory_limit = agent.memory_limit_bytes;
      if (agent.supervised()) {
        r.port = ports[static_cast<std::size_t>(i)];
        r.url = "http://127.0.0.1:" + std::to_string(r.port);
        r.process = agent.name + "#" + std::to_string(i);
        ProcessSpec spec;
        spec.name = r.process;
        spec.command = agent.command;
        for (const std::string& arg : agent.args) spec.args.push_back(substitute_port(arg, r.port));
        spec.env = agent.env;
        spec.env["PORT"] = std::to_string(r.port);
        spec.env["MEND_AGENT_NAME"] = agent.name;
        spec.env["MEND_REPLICA"] = std::to_string(i);
        spec.working_dir = agent.working_dir;
        spec.stop_timeout = agent.stop_timeout;
        specs.push_back(std::move(spec));
      } else {
        r.url = agent.urls[static_cast<std::size_t>(i)];
      }
      added.push_back(std::move(r));
    }
  }
  {
    std::lock_guard<std::mutex> lock(replicas_mu_);
    // The kept replicas as they are now, not as copied above: probes and process events went on
    // while processes were stopped and ports found.
    std::vector<Replica> merged;
    for (const Replica& k : keep) {
      for (Replica& r : replicas_) {
        if (r.agent == k.agent && r.index == k.index && r.url == k.url) {
          Replica current = std::move(r);
          current.probes = k.probes;
          current.health.reconfigure(k.probes);
          current.memory_limit = k.memory_limit;
          merged.push_back(std::move(current));
          break;
        }
      }
    }
    for (Replica& r : added) merged.push_back(std::move(r));
    replicas_ = std::move(merged);
  }
  for (ProcessSpec& spec : specs) {
    std::string name = spec.name;
    if (auto ok = supervisor_->add(std::move(spec)); !ok.ok()) {
      return Error::of_kind("configuration",
                            "cannot start agent process " + name + ": " + ok.error().message);
    }
    log("info", "started " + name);
  }
  return {};
}

bool DaemonCore::set_agent_health(const std::string& agent) {
  // Under replicas_mu_. The agent is as healthy as its best replica.
  bool any_ready = false;
  bool any = false;
  bool ready_unprobed = true;  // every ready replica is ready without a probe's word
  for (const Replica& r : replicas_) {
    if (r.agent != agent) continue;
    any = true;
    any_ready = any_ready || r.health.is_ready();
    if (r.health.is_ready() && r.probed) ready_unprobed = false;
  }
  if (!any) return false;
  bool fell = false;
  if (auto g = current()) {
    if (g->agents.find(agent) != nullptr) {
      const HealthState now = any_ready ? HealthState::healthy : HealthState::unhealthy;
      const HealthState before = g->agents.find(agent)->health.load();
      g->agents.set_health(agent, now);
      fell = before == HealthState::healthy && now == HealthState::unhealthy;
      if (before != now) {
        // Say so when "healthy" is an assumption: at 3 a.m. a log line that claims more than
        // mend knows sends the on-call engineer the wrong way.
        std::string why;
        if (!any_ready) {
          why = ": no replica is ready";
        } else if (ready_unprobed) {
          why = " (assumed: mend does not start it, and no probe has answered yet)";
        }
        log("info", "agent " + agent + " is " + std::string(to_string(now)) + why);
      }
    }
  }
  return fell;
}

void DaemonCore::on_process_event(const ProcessEvent& event) {
  std::string agent;
  {
    std::lock_guard<std::mutex> lock(replicas_mu_);
    for (Replica& r : replicas_) {
      if (r.process != event.name) continue;
      agent = r.agent;
      if (event.kind == ProcessEvent::Kind::started) {
        r.health.started(clock_.now());
        r.restarting = false;
        r.probing = false;
        r.epoch = next_epoch_++;
        r.pid = event.pid;
      } else if (event.kind == ProcessEvent::Kind::exited) {
        r.health.exited();
        r.probing = false;
        r.pid = 0;
        r.epoch = next_epoch_++;
      }
      set_agent_health(r.agent);
    }
  }
  if (agent.empty()) return;
  json j = {{"kind", "agent_process"}, {"at", to_iso8601(clock_.wall_now())}, {"source", agent},
            {"process", event.name},   {"event", to_string(event.kind)},      {"pid", event.pid}};
  if (!event.description.empty()) j["detail"] = event.description;
  if (event.delay.count() > 0) j["delay_seconds"] = seconds(event.delay);
  publish("agent_process", j.dump(-1, ' ', false, json::error_handler_t::replace));
  switch (event.kind) {
    case ProcessEvent::Kind::exited:
      log("warn", "agent " + event.name + " " + event.description);
      break;
    case ProcessEvent::Kind::started:
      if (event.description != "started") log("info", event.name + " " + event.description);
      break;
    case ProcessEvent::Kind::restart_scheduled:
      m_.restarts->with({agent, "crash"}).inc();
      counters(agent).restarts.fetch_add(1, std::memory_order_relaxed);
      log("info", "agent " + event.name + " restarts in " + format_seconds(event.delay));
      break;
    case ProcessEvent::Kind::intensity_exceeded: {
      std::string message = "agent " + event.name + " keeps crashing: " + event.description;
      log("error", message);
      net::post(*blocking_, [this, agent, message] {
        try {
          escalate_agent(agent, Severity::critical, ErrorType::service_unavailable, message);
        } catch (const std::exception& e) {
          log("error", "escalating for " + agent + " failed: " + e.what());
        }
      });
      break;
    }
    default:
      break;
  }
}

std::optional<Result<void>> DaemonCore::restart_agent(const std::string& agent, bool graceful,
                                                      const std::string& reason) {
  std::vector<std::string> processes;
  {
    std::lock_guard<std::mutex> lock(replicas_mu_);
    for (const Replica& r : replicas_) {
      if (r.agent == agent && !r.process.empty()) processes.push_back(r.process);
    }
  }
  if (processes.empty()) return std::nullopt;
  // One replica at a time: the others keep serving while one restarts.
  for (const std::string& p : processes) {
    if (supervision_closed_.load()) {
      return Result<void>(Error::of_kind("configuration", "mend is shutting down"));
    }
    {
      std::lock_guard<std::mutex> lock(replicas_mu_);
      for (Replica& r : replicas_) {
        if (r.process != p) continue;
        r.restarting = true;
        r.health.take_out();
      }
      set_agent_health(agent);
    }
    log("info", "restarting " + p + " (" + reason + (graceful ? ", graceful)" : ", forced)"));
    Result<void> restarted = supervisor_->restart(p, graceful);
    m_.restarts->with({agent, reason}).inc();
    counters(agent).restarts.fetch_add(1, std::memory_order_relaxed);
    if (!restarted.ok()) {
      log("error", "restarting " + p + " failed: " + restarted.error().message);
      return restarted;
    }
  }
  return Result<void>();
}

void DaemonCore::escalate_agent(const std::string& agent, Severity level, ErrorType type,
                                const std::string& message) {
  std::shared_ptr<Generation> g = current();
  if (!g) return;
  EscalationRequest request;
  request.level = level;
  request.error = Error::classified_as(type, level, message);
  request.agent = agent;
  request.task_type = "supervision";
  request.labels = {{"agent", agent},
                    {"error_type", std::string(to_string(type))},
                    {"task_type", "supervision"},
                    {"severity", std::string(to_string(level))}};
  Result<EscalationTaken> taken = g->escalations->escalate(request);
  if (taken.ok() && taken->pending) {
    log("warn",
        "escalation for " + agent + " kept in memory until the store takes writes: " + message);
  } else if (taken.ok()) {
    m_.escalations->with({std::string(to_string(taken->level))}).inc();
    log("warn", "escalated " + taken->record + " for " + agent + ": " + message);
  } else {
    log("error", "could not escalate for " + agent + ": " + taken.error().message);
  }
}

Replica* DaemonCore::replica_by_epoch(std::uint64_t epoch) {
  for (Replica& r : replicas_) {
    if (r.epoch == epoch) return &r;
  }
  return nullptr;
}

net::awaitable<void> DaemonCore::probe(std::uint64_t epoch, ProbeKind kind) {
  std::string url;
  Duration timeout{};
  {
    std::lock_guard<std::mutex> lock(replicas_mu_);
    Replica* found = replica_by_epoch(epoch);
    if (found == nullptr) co_return;
    Replica& r = *found;
    url = r.url + r.probes.path;
    timeout = r.health.timeout(kind);
  }
  auto request = http_->request("GET", url, {}, {}, timeout);
  Result<HttpResponse> response = co_await std::move(request);
  ProbeResult result;
  if (response.ok()) {
    result = interpret_health_response(*response);
  } else {
    result.detail = response.error().message;
  }
  const bool ok = observed_health(result) != HealthState::unhealthy;
  const TimePoint now = clock_.now();
  std::optional<std::string> restart_process;
  std::string agent;
  std::string transition;
  bool unhealthy_now = false;
  {
    std::lock_guard<std::mutex> lock(replicas_mu_);
    // Found by epoch: a replica restarted, replaced or reordered by a reload meanwhile is not
    // this probe's business any more.
    Replica* found = replica_by_epoch(epoch);
    if (found == nullptr) co_return;
    Replica& r = *found;
    r.probing = false;
    if (r.restarting) co_return;
    r.last_probe = result.detail;
    r.probed = true;
    agent = r.agent;
    const ProbeVerdict verdict = r.health.record(kind, ok, now);
    switch (verdict.change) {
      case ProbeVerdict::Change::none:
        break;
      case ProbeVerdict::Change::ready:
        transition = "ready";
        break;
      case ProbeVerdict::Change::not_ready:
        transition = "not ready: " + result.detail;
        break;
      case ProbeVerdict::Change::restart:
        restart_process = r.process;
        r.restarting = true;
        transition = kind == ProbeKind::liveness
                         ? "liveness probe failed " + std::to_string(verdict.failures) +
                               " times: " + result.detail
                         : "startup probe failed " + std::to_string(verdict.failures) + " times";
        break;
    }
    // The replica's transition is logged before the agent's health it leads to: the cause
    // first, then the effect.
    if (!transition.empty()) log("info", "agent " + agent + ": " + transition);
    // Its probes say it cannot serve (not a process that exited or restarts: supervision
    // speaks for those): self-healing runs, and on-call hears of it.
    const bool fell = set_agent_health(r.agent);
    unhealthy_now = fell && verdict.change == ProbeVerdict::Change::not_ready;
  }
  if (!transition.empty()) {
    json j = {{"kind", "agent_health"},
              {"at", to_iso8601(clock_.wall_now())},
              {"source", agent},
              {"detail", transition}};
    publish("agent_health", j.dump(-1, ' ', false, json::error_handler_t::replace));
  }
  if (unhealthy_now) {
    net::post(*blocking_, [this, agent, result] { on_agent_unhealthy(agent, result); });
  }
  if (restart_process) {
    const std::string process = *restart_process;
    net::post(*blocking_, [this, process, agent] {
      if (supervision_closed_.load()) return;
      log("warn", "restarting " + process + " (probe)");
      (void)supervisor_->restart(process, /*graceful=*/true);
      m_.restarts->with({agent, "probe"}).inc();
      counters(agent).restarts.fetch_add(1, std::memory_order_relaxed);
    });
  }
}

net::awaitable<void> DaemonCore::probe_loop() {
  LoopGuard guard(loops_running_);
  auto executor = co_await net::this_coro::executor;
  net::steady_timer timer(executor);
  while (!loops_stop_.load()) {
    const TimePoint now = clock_.now();
    std::vector<std::pair<std::uint64_t, ProbeKind>> due;
    {
      std::lock_guard<std::mutex> lock(replicas_mu_);
      for (Replica& r : replicas_) {
        if (r.probing || r.restarting) continue;
        if (!r.process.empty()) {
          // Only a process whose start this loop has heard of: the started event resets the
          // replica's probes, and must not undo what a probe of the new process found.
          std::optional<ProcessStatus> status = supervisor_->status(r.process);
          if (!status || !status->running || status->pid != r.pid) continue;
        }
        if (std::optional<ProbeKind> kind = r.health.take_due(now)) {
          r.probing = true;
          due.push_back({r.epoch, *kind});
        }
      }
    }
    for (auto [epoch, kind] : due) {
      auto probing = probe(epoch, kind);
      net::co_spawn(executor, std::move(probing), [this, epoch = epoch](std::exception_ptr e) {
        if (!e) return;
        std::lock_guard<std::mutex> lock(replicas_mu_);
        if (Replica* r = replica_by_epoch(epoch)) r->probing = false;
      });
    }
    timer.expires_after(kProbeTick);
    boost::system::error_code ec;
    co_await timer.async_wait(net::redirect_error(net::use_awaitable, ec));
  }
}

void DaemonCore::check_memory() {
  std::vector<std::pair<std::string, double>> over;  // agent, memory percent
  {
    std::lock_guard<std::mutex> lock(replicas_mu_);
    for (Replica& r : replicas_) {
      if (r.process.empty() || r.memory_limit == 0 || r.healing || r.restarting) continue;
      std::optional<ProcessStatus> status = supervisor_->status(r.process);
      if (!status || !status->running || status->rss_bytes <= r.memory_limit) continue;
      r.healing = true;
      over.push_back({r.agent, 100.0 * static_cast<double>(status->rss_bytes) /
                                   static_cast<double>(r.memory_limit)});
    }
  }
  for (const auto& [agent, percent] : over) {
    std::shared_ptr<Generation> g = current();
    Symptoms symptoms;
    symptoms.error_type = ErrorType::memory_exhausted;
    symptoms.health = HealthState::degraded;
    symptoms.metrics["memory_percent"] = percent;
    symptoms.detail = "RSS over the configured memory limit";
    log("warn", "agent " + agent + " uses " + std::to_string(static_cast<int>(percent)) +
                    " % of its memory limit: self-healing");
    HealingReport report = g->healer->heal(agent, symptoms, *g->operations, clock_.now());
    publish("self_healing", report.to_json());
    if (report.escalate) {
      escalate_agent(agent, Severity::high, ErrorType::memory_exhausted,
                     "high memory usage not recovered: " + report.recovery.reason);
    }
    std::lock_guard<std::mutex> lock(replicas_mu_);
    for (Replica& r : replicas_) {
      if (r.agent == agent) r.healing = false;
    }
  }
}

void DaemonCore::on_agent_unhealthy(const std::string& agent, const ProbeResult& probe) {
  if (supervision_closed_.load()) return;
  std::shared_ptr<Generation> g = current();
  if (!g) return;
  // What its /health answer says decides the recovery (docs/agent-protocol.md): its metrics
  // (memory, pool), a database it lost, else an unresponsive service.
  Symptoms symptoms;
  symptoms.health = HealthState::unhealthy;
  symptoms.metrics = probe.metrics;
  if (auto db = probe.metrics.find("database_connected");
      db != probe.metrics.end() && db->second == 0) {
    symptoms.error_type = ErrorType::database_error;
  }
  symptoms.detail = probe.detail;
  log("warn", "agent " + agent + " is unhealthy (" + probe.detail + "): self-healing");
  HealingReport report = g->healer->heal(agent, symptoms, *g->operations, clock_.now());
  publish("self_healing", report.to_json());
  // On-call hears of it either way: an agent that stopped serving is news even when mend fixed
  // it (the record says so), and the record's fingerprint keeps one active record per outage.
  escalate_agent(
      agent, report.recovered ? Severity::medium : Severity::high, ErrorType::service_unavailable,
      "agent " + agent + " is unhealthy: no replica is ready (" + probe.detail +
          "); self-healing " +
          (report.recovered ? "recovered it (" + report.recovery.action + ")"
                            : "did not recover it (" +
                                  (report.recovery.reason.empty() ? std::string("no strategy")
                                                                  : report.recovery.reason) +
                                  ")"));
}

void DaemonCore::check_slas(Generation& g) {
  Result<std::vector<EscalationRecord>> re = g.escalator->check_slas();
  if (!re.ok()) {
    log("error", "SLA check failed: " + re.error().message);
    return;
  }
  for (const EscalationRecord& r : *re) {
    log("warn",
        "SLA breached: " + r.display_id() + " re-escalated to " + std::string(to_string(r.level)));
    m_.escalations->with({std::string(to_string(r.level))}).inc();
  }
}

void DaemonCore::deliver_notifications(Generation& g) {
  DeliveryReport report = g.dispatcher->deliver_due();
  auto& family = *m_.notifications;
  if (report.delivered) family.with({"delivered"}).inc(report.delivered);
  if (report.retry_scheduled) family.with({"retry"}).inc(report.retry_scheduled);
  if (report.dead) family.with({"dead"}).inc(report.dead);
}

net::awaitable<void> DaemonCore::housekeeping_loop() {
  LoopGuard guard(loops_running_);
  auto executor = co_await net::this_coro::executor;
  net::steady_timer timer(executor);
  TimePoint next_delivery{};
  TimePoint next_sla{};
  TimePoint next_heartbeat{};
  TimePoint next_memory{};
  std::atomic<bool>& busy = housekeeping_busy_;
  while (!loops_stop_.load()) {
    std::shared_ptr<Generation> g = current();
    const TimePoint now = clock_.now();
    if (!busy && g) {
      bool deliver = now >= next_delivery;
      bool sla = now >= next_sla;
      if (deliver) next_delivery = now + g->config.escalation.delivery_interval;
      if (sla) next_sla = now + g->config.escalation.sla_check_interval;
      if (deliver || sla) {
        busy = true;
        // Store and receivers block: their pass runs on the blocking pool.
        net::post(*blocking_, [this, g, deliver, sla] {
          struct Done {
            std::atomic<bool>& flag;
            ~Done() { flag = false; }
          } done{housekeeping_busy_};
          try {
            if (deliver) retry_escalations(*g, false);
            if (sla) check_slas(*g);
            if (deliver) deliver_notifications(*g);
            // Finished tasks beyond tasks.retained leave the store as they leave memory.
            if (sla) store_->prune_tasks(boot_config_.tasks.retained);
          } catch (const std::exception& e) {
            // The store failed (disk full, locked): the next pass tries again.
            log("error", std::string("notification or SLA pass failed: ") + e.what());
          }
        });
      }
    }
    // Self-healing for memory can take a minute (restart, wait for ready): a job of its own,
    // so that notifications and SLA checks do not wait for it.
    if (!memory_busy_ && now >= next_memory) {
      next_memory = now + std::chrono::seconds(1);
      memory_busy_ = true;
      net::post(*blocking_, [this] {
        struct Done {
          std::atomic<bool>& flag;
          ~Done() { flag = false; }
        } done{memory_busy_};
        try {
          check_memory();
        } catch (const std::exception& e) {
          log("error", std::string("memory watch failed: ") + e.what());
        }
      });
    }
    if (now >= next_heartbeat) {
      events_.heartbeat();
      next_heartbeat = now + std::chrono::seconds(15);
    }
    timer.expires_after(kProbeTick);
    boost::system::error_code ec;
    co_await timer.async_wait(net::redirect_error(net::use_awaitable, ec));
  }
  // Let a delivery pass in progress finish before shutdown goes on.
  while (busy) {
    timer.expires_after(std::chrono::milliseconds(10));
    boost::system::error_code ec;
    co_await timer.async_wait(net::redirect_error(net::use_awaitable, ec));
  }
}

// --- Lifecycle -------------------------------------------------------------------------------

Result<void> DaemonCore::start() {
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    if (started_) return Error::of_kind("configuration", "the daemon was started already");
    started_ = true;
  }
  const Config& config = boot_config_;
  const std::size_t threads = std::max<std::size_t>(config.server.threads, 1);
  io_ = std::make_unique<net::io_context>(static_cast<int>(threads));
  work_.emplace(io_->get_executor());
  blocking_ = std::make_unique<net::thread_pool>(4);
  HttpClientOptions client;
  client.max_idle_per_host = 64;
  http_ = std::make_unique<HttpClient>(io_->get_executor(), client);
  for (std::size_t i = 0; i < threads; ++i) {
    io_threads_.emplace_back([this] {
      for (;;) {
        try {
          io_->run();
          return;
        } catch (const std::exception& e) {
          log("error", std::string("unexpected exception on an I/O thread: ") + e.what());
        }
      }
    });
  }

  SqliteOptions store_options;
  store_options.busy_timeout =
      std::chrono::duration_cast<std::chrono::milliseconds>(config.store.busy_timeout);
  Result<std::unique_ptr<SqliteStore>> store = SqliteStore::open(config.store.path, store_options);
  if (!store.ok()) return store.error();
  store_ = std::move(*store);
  TaskWriter::Options writer;
  writer.on_health_change = [this](bool failing, const std::string& error) {
    task_writes_failing_.store(failing);
    on_store_health(error);
  };
  EscalationBacklog::Options backlog;
  backlog.on_health_change = [this](bool failing, const std::string& error) {
    escalation_writes_failing_.store(failing);
    on_store_health(error);
  };
  escalation_backlog_ = std::make_unique<EscalationBacklog>(clock_, backlog);
  task_writer_ = std::make_unique<TaskWriter>(*store_, clock_, writer);
  std::vector<std::pair<std::string, Task>> resumed;
  if (auto recovered = recover_tasks(config, &resumed); !recovered.ok()) return recovered;

  CrashLoopOptions crash;
  crash.initial = config.supervision.restart_backoff_initial;
  crash.max = config.supervision.restart_backoff_max;
  crash.reset_after = config.supervision.restart_backoff_reset;
  crash.intensity_max_restarts = config.supervision.intensity_max_restarts;
  crash.intensity_period = config.supervision.intensity_period;
  supervisor_ = std::make_unique<ProcessSupervisor>(
      crash,
      [this](const std::string& name, bool is_stderr, std::string_view line) {
        log(is_stderr ? "warn" : "info", "[" + name + "] " + std::string(line));
      },
      [this](const ProcessEvent& event) { on_process_event(event); });

  if (auto started = start_replicas(config, /*first=*/true); !started.ok()) return started;
  Result<std::shared_ptr<Generation>> g = build(config);
  if (!g.ok()) return g.error();
  set_generation(*g);
  {
    std::lock_guard<std::mutex> lock(replicas_mu_);
    for (const Replica& r : replicas_) set_agent_health(r.agent);
  }

  if (options_.handle_signals) {
    // Before the API listens: whoever learns the address may signal at once.
    signals_ = std::make_unique<net::signal_set>(*io_, SIGTERM, SIGINT, SIGHUP);
    arm_signals();
  }

  HttpServerOptions server;
  server.bind_address = config.server.address;
  server.port = config.server.port;
  server.max_body_bytes = config.server.max_body_bytes;
  server.read_timeout = config.server.read_timeout;
  server.max_connections = config.server.max_connections;
  server.max_connections_per_client = config.server.max_connections_per_client;
  server.threads = threads;
  server.screen = [this](const HttpRequest& head) { return screen(head); };
  server.reserved_paths = {"/healthz", "/readyz"};
  server_ = std::make_unique<HttpServer>(
      server, HttpServer::AsyncHandler(
                  [this](HttpRequest request, std::shared_ptr<HttpResponder> responder) {
                    handle(std::move(request), std::move(responder));
                  }));
  if (auto listening = server_->start(); !listening.ok()) return listening.error();

  for (std::size_t i = 0; i < config.relays.size(); ++i) {
    const RelayConfig& rc = config.relays[i];
    RelayOptions ro;
    ro.index = i;
    ro.agent = rc.agent;
    ro.address = rc.address;
    ro.port = rc.port;
    ro.threads = rc.threads > 0 ? rc.threads : threads;
    ro.max_connections = config.server.max_connections;
    ro.max_connections_per_client = config.server.max_connections_per_client;
    ro.max_request_bytes = config.server.max_body_bytes;
    ro.max_response_bytes = rc.max_response_bytes;
    ro.pass_admin = rc.pass_admin;
    ro.idle_timeout = config.server.read_timeout;
    auto relay = std::make_unique<Relay>(*this, ro);
    if (auto listening = relay->start(); !listening.ok()) return listening.error();
    log("info", "relay for " + rc.agent + " on " + relay->base_url());
    relays_.push_back(std::move(relay));
  }

  net::co_spawn(*io_, probe_loop(), net::detached);
  net::co_spawn(*io_, housekeeping_loop(), net::detached);
  if (!resumed.empty()) net::co_spawn(*io_, resume_tasks(std::move(resumed)), net::detached);
  log("info", "mend serving on " + server_->base_url() + " with " +
                  std::to_string(config.agents.size()) + " agents");
  return {};
}

void DaemonCore::stop() {
  std::lock_guard<std::mutex> lock(state_mu_);
  stop_requested_ = true;
  state_cv_.notify_all();
}

void DaemonCore::arm_signals() {
  signals_->async_wait([this](const boost::system::error_code& ec, int number) {
    if (ec) return;  // cancelled at shutdown
    if (number == SIGHUP) {
      log("info", "received SIGHUP: reloading the configuration");
      net::post(*blocking_, [this] {
        Result<void> r = detail::guarded([this] { return reload(""); });
        if (!r.ok()) log("error", "reload refused: " + r.error().message);
      });
      arm_signals();
      return;
    }
    log("info",
        std::string("received ") + (number == SIGTERM ? "SIGTERM" : "SIGINT") + ": shutting down");
    stop();
  });
}

int DaemonCore::wait() {
  {
    std::unique_lock<std::mutex> lock(state_mu_);
    state_cv_.wait(lock, [this] { return stop_requested_; });
    if (finished_) return exit_code_;
  }
  if (io_) shutdown();
  std::lock_guard<std::mutex> lock(state_mu_);
  finished_ = true;
  return exit_code_;
}

void DaemonCore::shutdown() {
  {
    // Under tasks_mu_: a submission either counts as in flight before this, or sees it.
    std::lock_guard<std::mutex> lock(tasks_mu_);
    stopping_.store(true);
  }
  if (signals_) {
    // On the I/O threads, where the SIGHUP handler re-arms the set. From then on a second SIGTERM
    // or SIGINT has its default effect: it ends mend at once.
    net::post(*io_, [this] {
      boost::system::error_code ignored;
      signals_->cancel(ignored);
      signals_->clear(ignored);
    });
  }
  for (auto& relay : relays_) relay->stop_accepting();
  const Duration drain = boot_config_.server.drain_timeout;
  log("info", "draining " + std::to_string(in_flight_.load()) + " tasks in flight (up to " +
                  format_seconds(drain) + ")");
  {
    std::unique_lock<std::mutex> lock(tasks_mu_);
    drained_cv_.wait_for(lock, drain, [this] { return in_flight_.load() == 0; });
  }
  if (std::size_t left = in_flight_.load(); left > 0) {
    log("warn", std::to_string(left) + " tasks still in flight after the drain timeout");
  }
  // Probes, deliveries and SLA checks went on during the drain; now they end (bounded wait).
  loops_stop_.store(true);
  for (int i = 0; i < 300 && (loops_running_.load() > 0 || housekeeping_busy_.load()); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  // Finish pending notifications: passes until nothing is due (bounded). No housekeeping pass
  // runs any more, so no message goes out twice.
  if (std::shared_ptr<Generation> g = current()) {
    const TimePoint until = clock_.now() + std::chrono::seconds(10);
    for (int pass = 0; pass < 100 && clock_.now() < until; ++pass) {
      DeliveryReport report;
      try {
        report = g->dispatcher->deliver_due();
      } catch (const std::exception& e) {
        log("error", std::string("last notification pass failed: ") + e.what());
        break;
      }
      if (report.delivered + report.retry_scheduled + report.held_back == 0) break;
      if (report.delivered == 0) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
  // Let the answers to drained tasks reach their clients before the connections close.
  for (int i = 0; i < 200; ++i) {
    std::lock_guard<std::mutex> lock(answered_mu_);
    std::erase_if(answered_, [](const std::shared_ptr<HttpResponder>& r) { return r->closed(); });
    if (answered_.empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  // The event streams end with their last chunk before the server closes the connections, so
  // that a follower can tell mend stopping from mend dying (up to 1 s for slow readers).
  std::vector<std::shared_ptr<HttpResponder>> streams = events_.close_all();
  for (int i = 0; i < 100; ++i) {
    std::erase_if(streams, [](const std::shared_ptr<HttpResponder>& r) { return r->closed(); });
    if (streams.empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  // Relayed requests still in flight get the drain time again at most (they are bounded by
  // their agents' call timeouts).
  for (auto& relay : relays_) relay->stop(drain);
  relays_.clear();
  if (server_) server_->stop();
  // Agents stop in reverse order of start. Whatever still runs on the pools (a self-healing
  // step of a task that outlived the drain) finds supervision closed and restarts nothing; the
  // supervisor object itself lives until every thread is joined, and its destructor stops
  // anything started meanwhile.
  supervision_closed_.store(true);
  if (supervisor_) supervisor_->stop_all();
  work_.reset();
  if (blocking_) blocking_->join();
  io_->stop();
  for (std::thread& t : io_threads_) t.join();
  io_threads_.clear();
  signals_.reset();
  supervisor_.reset();
  if (std::shared_ptr<Generation> g = current(); g && escalation_backlog_) {
    // One last try for escalations kept while the store refused writes; what is left is said.
    retry_escalations(*g, true);
    const EscalationBacklog::Stats s = escalation_backlog_->stats();
    if (s.pending_occurrences > 0 || s.dropped > 0) {
      log("error", std::to_string(s.pending_occurrences + s.dropped) +
                       " escalations could not be written to the store (" + s.last_error + ")");
    }
  }
  if (task_writer_) {
    // Every task has finished or was left running (it resumes at the next start): what the
    // writer still holds is tried before mend says it stopped.
    // Counted after the writer's last tries, so that the line says what is really lost.
    const TaskWriter::Health h = task_writer_->stop();
    const std::size_t lost = h.retry_pending + h.queued + static_cast<std::size_t>(h.dropped);
    if (lost > 0) {
      log("error", std::to_string(lost) + " changes of tasks could not be written to the store (" +
                       h.last_error + ")");
    }
  }
  log("info", "mend stopped");
}

Result<void> DaemonCore::reload(const std::string& path) {
  std::lock_guard<std::mutex> serial(reload_mu_);
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
  {
    std::lock_guard<std::mutex> lock(replicas_mu_);
    for (const Replica& r : replicas_) set_agent_health(r.agent);
  }
  family.with({"applied"}).inc();
  log("info", "configuration reloaded from " + file);
  publish(
      "config_reloaded",
      json({{"kind", "config_reloaded"}, {"at", to_iso8601(clock_.wall_now())}, {"source", file}})
          .dump(-1, ' ', false, json::error_handler_t::replace));
  return {};
}

}  // namespace server_detail

// --- The public face -------------------------------------------------------------------------

struct Daemon::Impl {
  Impl(Config config, DaemonOptions options) : core(std::move(config), std::move(options)) {}
  server_detail::DaemonCore core;
};

Daemon::Daemon(Config config, DaemonOptions options)
    : impl_(std::make_unique<Impl>(std::move(config), std::move(options))) {}
Daemon::~Daemon() = default;
Result<void> Daemon::start() {
  return impl_->core.start();
}
int Daemon::wait() {
  return impl_->core.wait();
}
void Daemon::stop() {
  impl_->core.stop();
}
Result<void> Daemon::reload(const std::string& path) {
  return impl_->core.reload(path);
}
std::string Daemon::base_url() const {
  return impl_->core.base_url();
}

}  // namespace mend
