// The daemon's replicas (daemon_impl.h): starting supervised agents on free loopback ports,
// their process events, probes (core's rules in mend/core/replica_probes.h), memory watch, restarts
// and the escalations an unhealthy agent raises.

// clang-format off
#include <utility>  // before Asio's coroutine headers: Boost 1.74's awaitable.hpp forgets it
// clang-format on

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cctype>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "daemon_impl.h"

namespace mend::server_detail {

namespace net = boost::asio;
using nlohmann::json;

namespace {

// The lowest port of the system's ephemeral range (what bind to port 0 hands out), 32768 when it
// cannot be read.
unsigned short ephemeral_low() {
  unsigned low = 32768;
  unsigned high = 60999;
  if (FILE* f = std::fopen("/proc/sys/net/ipv4/ip_local_port_range", "r")) {
    if (std::fscanf(f, "%u %u", &low, &high) != 2) low = 32768;
    std::fclose(f);
  }
  return static_cast<unsigned short>(std::clamp(low, 1025u, 65535u));
}

// Free loopback ports for supervised agents, distinct from each other and from `taken`, below the
// ephemeral range: a port bind(0) hands out is free until the agent binds it, and mend's own
// listeners (port 0 for the API or a relay) or any other process binding port 0 could be given
// it in between, leaving the agent to crash-loop on "address in use". Each is checked by binding
// it; the sockets stay open until all are found. The search starts at a place of this process's
// own (its pid), so that daemons starting at once look at different ports. Below 10,000 ports
// of range: bind(0), as before.
Result<std::vector<unsigned short>> free_loopback_ports(std::size_t count,
                                                        const std::set<unsigned short>& taken) {
  std::vector<int> sockets;
  std::vector<unsigned short> ports;
  auto close_all = [&] {
    for (int fd : sockets) ::close(fd);
  };
  constexpr unsigned kLowest = 10000;
  const unsigned low = ephemeral_low();
  const unsigned span = low > kLowest ? low - kLowest : 0;
  const unsigned start = span > 0 ? static_cast<unsigned>(::getpid()) * 97u % span : 0;
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
    if (span >= 1000) {
      addr.sin_port = htons(
          static_cast<unsigned short>(kLowest + (start + static_cast<unsigned>(tries)) % span));
      if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) continue;  // in use
    }
    socklen_t len = sizeof addr;
    if ((span < 1000 && ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) ||
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

std::string substitute_port(std::string text, unsigned short port) {
  const std::string token = "{port}";
  for (std::size_t at = text.find(token); at != std::string::npos; at = text.find(token, at + 1)) {
    text.replace(at, token.size(), std::to_string(port));
  }
  return text;
}

// Replica `index` of a supervised agent, on `port`, and the process that serves it.
ProcessSpec supervised_replica(const AgentConfig& agent, int index, unsigned short port,
                               Replica& r) {
  r.port = port;
  r.url = "http://127.0.0.1:" + std::to_string(port);
  r.process = agent.name + "#" + std::to_string(index);
  ProcessSpec spec;
  spec.name = r.process;
  spec.command = agent.command;
  for (const std::string& arg : agent.args) spec.args.push_back(substitute_port(arg, port));
  spec.env = agent.env;
  spec.env["PORT"] = std::to_string(port);
  spec.env["MEND_AGENT_NAME"] = agent.name;
  spec.env["MEND_REPLICA"] = std::to_string(index);
  spec.working_dir = agent.working_dir;
  spec.stop_timeout = agent.stop_timeout;
  return spec;
}

}  // namespace

Result<void> DaemonCore::start_replicas(const Config& config, bool first) {
  if (supervision_closed_.load()) return Error::of_kind("configuration", "mend is shutting down");
  std::shared_ptr<Generation> old = first ? nullptr : current();
  ReplicaSet::Reconfiguration plan =
      replicas_.plan_reconfigure(config, old ? &old->config : nullptr);
  const std::vector<Replica>& keep = plan.keep;
  const std::vector<std::string>& to_stop = plan.to_stop;
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
      r.epoch = replicas_.new_epoch();
      r.probes = agent.probes;
      // Agents mend does not start are ready until a probe says otherwise.
      r.health = ReplicaProbes(agent.probes, agent.supervised());
      r.memory_limit = agent.memory_limit_bytes;
      if (agent.supervised()) {
        specs.push_back(supervised_replica(agent, i, ports[static_cast<std::size_t>(i)], r));
      } else {
        r.url = agent.urls[static_cast<std::size_t>(i)];
      }
      added.push_back(std::move(r));
    }
  }
  // The kept replicas as they are now, not as copied above: probes and process events went on
  // while processes were stopped and ports found.
  replicas_.replace(keep, std::move(added));
  // Scaled agents (replicas: {min, max}) start with min replicas; their scalers take over.
  replicas_.configure_scaling(config, clock_.now());
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

bool DaemonCore::agent_health(const std::string& agent, const AgentReplicaHealth& health) {
  std::shared_ptr<Generation> g = current();
  if (!g || g->agents.find(agent) == nullptr) return false;
  const HealthState now = health.any_ready ? HealthState::healthy : HealthState::unhealthy;
  const HealthState before = g->agents.find(agent)->health.load();
  g->agents.set_health(agent, now);
  if (before != now) {
    // Say so when "healthy" is an assumption: at 3 a.m. a log line that claims more than mend
    // knows sends the on-call engineer the wrong way.
    std::string why;
    if (!health.any_ready) {
      why = ": no replica is ready";
    } else if (health.ready_unprobed) {
      why = " (assumed: mend does not start it, and no probe has answered yet)";
    }
    log("info", "agent " + agent + " is " + std::string(to_string(now)) + why);
  }
  return before == HealthState::healthy && now == HealthState::unhealthy;
}

namespace {

// The agent's endpoint with this URL: its balancer's replica index, or -1.
int endpoint_index(const AgentRegistry::Entry& entry, const std::string& url) {
  const std::vector<std::string>& urls = entry.info.endpoints;
  const auto at = std::find(urls.begin(), urls.end(), url);
  return at == urls.end() ? -1 : static_cast<int>(at - urls.begin());
}

}  // namespace

void DaemonCore::replica_readiness(const std::string& agent, const std::string& url, bool ready) {
  std::shared_ptr<Generation> g = current();
  if (!g) return;
  if (AgentRegistry::Entry* entry = g->agents.find(agent)) {
    entry->balancer.set_ready(endpoint_index(*entry, url), ready);
  }
}

void DaemonCore::sync_readiness(Generation& g) {
  for (const Replica& r : replicas_.snapshot()) {
    if (AgentRegistry::Entry* entry = g.agents.find(r.agent)) {
      entry->balancer.set_ready(endpoint_index(*entry, r.url), r.health.is_ready());
    }
  }
}

void DaemonCore::on_process_event(const ProcessEvent& event) {
  const std::string agent = replicas_.on_process_event(event);
  if (agent.empty()) return;
  json j = {{"kind", "agent_process"}, {"at", to_iso8601(clock_.wall_now())}, {"source", agent},
            {"process", event.name},   {"event", to_string(event.kind)},      {"pid", event.pid}};
  if (!event.description.empty()) j["detail"] = event.description;
  if (event.delay.count() > 0) j["delay_seconds"] = seconds(event.delay);
  publish("agent_process", j.dump(-1, ' ', false, json::error_handler_t::replace));
  switch (event.kind) {
    case ProcessEvent::Kind::exited:
      log("warn", "agent " + event.name + " " + event.description);
      if (replicas_.take_port_move(event.name, clock_.now())) {
        net::post(*blocking_, [this, process = event.name] { move_replica_port(process); });
      }
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
  const std::vector<std::string> processes = replicas_.processes_of(agent);
  if (processes.empty()) return std::nullopt;
  // One replica at a time: the others keep serving while one restarts.
  for (const std::string& p : processes) {
    if (supervision_closed_.load()) {
      return Result<void>(Error::of_kind("configuration", "mend is shutting down"));
    }
    replicas_.take_out(p);
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

net::awaitable<void> DaemonCore::probe(std::uint64_t epoch, ProbeKind kind) {
  std::optional<ReplicaSet::ProbeTarget> target = replicas_.probe_target(epoch, kind);
  if (!target) co_return;
  auto request = http_->request("GET", target->url, {}, {}, target->timeout);
  Result<HttpResponse> response = co_await std::move(request);
  ProbeResult result;
  if (response.ok()) {
    result = interpret_health_response(*response);
  } else {
    result.detail = response.error().message;
  }
  const bool ok = observed_health(result) != HealthState::unhealthy;
  std::optional<ReplicaSet::ProbeOutcome> outcome =
      replicas_.record_probe(epoch, kind, ok, result.detail, clock_.now());
  if (!outcome) co_return;
  const std::string& agent = outcome->agent;
  if (!outcome->transition.empty()) {
    json j = {{"kind", "agent_health"},
              {"at", to_iso8601(clock_.wall_now())},
              {"source", agent},
              {"detail", outcome->transition}};
    publish("agent_health", j.dump(-1, ' ', false, json::error_handler_t::replace));
  }
  if (outcome->admitted) {
    // The health recheck of a scale-up passed: the replica joins the agent's endpoints.
    std::string process;
    for (const Replica& r : replicas_.snapshot()) {
      if (r.epoch == epoch) process = r.process;
    }
    publish_scaling(agent, "replica_ready", "", outcome->replicas_in_service, process,
                    "ready: takes calls, " + std::to_string(outcome->replicas_in_service) +
                        " replicas in service");
    net::post(*blocking_,
              [this, agent] { replicas_changed("a replica of " + agent + " is ready"); });
  }
  if (outcome->agent_fell) {
    net::post(*blocking_, [this, agent, result] { on_agent_unhealthy(agent, result); });
  }
  if (outcome->restart_process) {
    const std::string process = *outcome->restart_process;
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
    auto status_of = [this](const std::string& process) { return supervisor_->status(process); };
    scale_replicas(now);
    for (ReplicaSet::DueProbe due : replicas_.take_due(now, status_of)) {
      auto probing = probe(due.epoch, due.kind);
      net::co_spawn(executor, std::move(probing), [this, epoch = due.epoch](std::exception_ptr e) {
        if (e) replicas_.probe_abandoned(epoch);
      });
    }
    timer.expires_after(kProbeTick);
    boost::system::error_code ec;
    co_await timer.async_wait(net::redirect_error(net::use_awaitable, ec));
  }
}

void DaemonCore::check_memory() {
  auto status_of = [this](const std::string& process) { return supervisor_->status(process); };
  const std::vector<ReplicaSet::OverMemory> over = replicas_.over_memory(status_of);
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
    replicas_.healing_done(agent);
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

// --- scaling -------------------------------------------------------------------------------------

void DaemonCore::scale_replicas(TimePoint now) {
  if (supervision_closed_.load()) return;
  std::map<std::string, ReplicaSet::LoadReading> loads;
  for (const std::string& agent : replicas_.scaled_agents()) {
    const AgentCounters& c = counters(agent);
    ReplicaSet::LoadReading& load = loads[agent];
    // The task API's calls are counted by its invoker, every call (the relay's too) by the
    // agent's balancers: the larger is the nearer (neither misses more than the other's share).
    load.calls_out =
        std::max({0, c.calls_out.load(std::memory_order_relaxed), balanced_calls_out(agent)});
    load.refused = c.refused_capacity.load(std::memory_order_relaxed);
    load.pool_exhausted = c.pool_exhausted.load(std::memory_order_relaxed);
    load.calls_ended = c.calls_ended.load(std::memory_order_relaxed);
    load.latency_sum = Duration(c.latency_ns.load(std::memory_order_relaxed));
  }
  if (!loads.empty()) {
    for (const ReplicaSet::ScalingStep& step : replicas_.observe_scaling(now, loads)) {
      on_scaling(step);
    }
  }
  // Retired replicas whose calls are done (or whose call timeout is over) are stopped: SIGTERM,
  // then SIGKILL after the agent's stop_timeout, on the blocking pool (remove() waits).
  auto idle = [this](const std::string& agent) {
    return counters(agent).calls_out.load(std::memory_order_relaxed) <= 0 &&
           balanced_calls_out(agent) == 0;
  };
  for (const std::string& process : replicas_.take_retired(now, idle)) {
    net::post(*blocking_, [this, process] {
      Result<void> removed = supervisor_->remove(process);
      replicas_.forget(process);
      if (removed.ok()) {
        log("info", "stopped " + process + " (retired)");
      } else {
        log("warn", "stopping " + process + " (retired): " + removed.error().message);
      }
    });
  }
}

void DaemonCore::on_scaling(const ReplicaSet::ScalingStep& step) {
  const ScalingDecision& d = step.decision;
  publish_scaling(step.agent, to_string(d.action),
                  d.action == ScalingAction::hold ? to_string(d.held) : std::string_view(),
                  d.replicas, step.process, d.reason);
  switch (d.action) {
    case ScalingAction::scale_up:
      m_.scaling->with({step.agent, "up"}).inc();
      log("info", "agent " + step.agent + ": " + d.reason);
      net::post(*blocking_, [this, agent = step.agent] { start_scaled_replica(agent); });
      break;
    case ScalingAction::scale_down:
      m_.scaling->with({step.agent, "down"}).inc();
      log("info", "agent " + step.agent + ": " + d.reason + " (" + step.process + " retires)");
      net::post(*blocking_, [this, agent = step.agent] {
        replicas_changed("a replica of " + agent + " retires");
      });
      break;
    case ScalingAction::start_abandoned:
      m_.scaling->with({step.agent, "abandoned"}).inc();
      log("warn", "agent " + step.agent + ": " + d.reason);
      break;
    case ScalingAction::hold:
      log("info", "agent " + step.agent + ": " + d.reason);
      break;
  }
}

void DaemonCore::start_scaled_replica(const std::string& agent_name) {
  if (supervision_closed_.load()) return;
  std::shared_ptr<Generation> g = current();
  const AgentConfig* agent = g ? g->config.agent(agent_name) : nullptr;
  const TimePoint now = clock_.now();
  if (agent == nullptr || !agent->supervised()) {
    replicas_.scale_up_failed(agent_name, "", now);  // reloaded away meanwhile
    return;
  }
  std::set<unsigned short> taken;
  for (const Replica& r : replicas_.snapshot()) taken.insert(r.port);
  Result<std::vector<unsigned short>> port = free_loopback_ports(1, taken);
  const int index = replicas_.free_index(agent_name);
  Replica r;
  r.agent = agent_name;
  r.index = index;
  r.probes = agent->probes;
  r.health = ReplicaProbes(agent->probes, /*supervised=*/true);
  r.memory_limit = agent->memory_limit_bytes;
  std::string failure;
  std::string process;
  if (port.ok()) {
    ProcessSpec spec = supervised_replica(*agent, index, port->front(), r);
    r.epoch = replicas_.new_epoch();
    process = r.process;
    // In the set before it starts: its started event must find it.
    replicas_.add_scaled(std::move(r));
    Result<void> added = supervisor_->add(std::move(spec));
    if (added.ok()) {
      log("info", "started " + process + " (scaling up: it takes calls once ready)");
      return;
    }
    failure = "cannot start " + process + ": " + added.error().message;
  } else {
    failure = "no free port for a new replica: " + port.error().message;
  }
  replicas_.scale_up_failed(agent_name, process, clock_.now());
  m_.scaling->with({agent_name, "failed"}).inc();
  log("error", "agent " + agent_name + ": scaling up failed: " + failure);
  publish_scaling(agent_name, "start_failed", "", replicas_.in_service_counts()[agent_name],
                  process, failure);
}

bool DaemonCore::says_port_in_use(std::string_view line) {
  // Every line every agent writes comes here: searched in place, without a lowered copy.
  line = line.substr(0, 4096);
  auto contains = [line](std::string_view lower_case) {
    return std::search(line.begin(), line.end(), lower_case.begin(), lower_case.end(),
                       [](char a, char b) {
                         return std::tolower(static_cast<unsigned char>(a)) == b;
                       }) != line.end();
  };
  return contains("address already in use") || contains("address in use") || contains("eaddrinuse");
}

void DaemonCore::move_replica_port(const std::string& process) {
  if (supervision_closed_.load()) return;
  std::shared_ptr<Generation> g = current();
  std::optional<Replica> moving;
  std::set<unsigned short> taken;
  for (const Replica& r : replicas_.snapshot()) {
    taken.insert(r.port);
    if (r.process == process) moving = r;
  }
  const AgentConfig* agent = g && moving ? g->config.agent(moving->agent) : nullptr;
  if (agent == nullptr || !agent->supervised()) return;  // reloaded away meanwhile
  Result<std::vector<unsigned short>> port = free_loopback_ports(1, taken);
  if (!port.ok()) {
    log("error", process + " could not listen on port " + std::to_string(moving->port) +
                     " (in use), and no other port is free: " + port.error().message);
    return;
  }
  const unsigned short old_port = moving->port;
  // Its restart on the old port is cancelled with it; it comes back on the new one.
  (void)supervisor_->remove(process);
  ProcessSpec spec = supervised_replica(*agent, moving->index, port->front(), *moving);
  replicas_.move_port(process, moving->port);
  if (Result<void> added = supervisor_->add(std::move(spec)); !added.ok()) {
    log("error", "cannot start " + process + " on port " + std::to_string(moving->port) + ": " +
                     added.error().message);
    return;
  }
  log("warn", process + " could not listen on port " + std::to_string(old_port) +
                  " (address in use): moved to port " + std::to_string(moving->port));
  replicas_changed("a replica of " + moving->agent + " moved to port " +
                   std::to_string(moving->port));
}

void DaemonCore::replicas_changed(const std::string& why) {
  MutexLock serial(reload_mu_);  // one new generation at a time, a reload's or this
  std::shared_ptr<Generation> old = current();
  if (!old || supervision_closed_.load()) return;
  // The same configuration: the agents' breakers, balancers and budgets go on.
  Result<std::shared_ptr<Generation>> g = build(old->config, old.get());
  if (!g.ok()) {
    log("error", "the agents' replicas changed (" + why +
                     "), but their new generation could not be built: " + g.error().message);
    return;
  }
  set_generation(*g);
  replicas_.report_health();
}

void DaemonCore::publish_scaling(const std::string& agent, std::string_view action,
                                 std::string_view held, int replicas, const std::string& process,
                                 const std::string& detail) {
  ScalingEvent event{agent, std::string(action), std::string(held), replicas, process, detail};
  publish("replica_scaling", scaling_event_json(event, clock_.wall_now()));
}

}  // namespace mend::server_detail
