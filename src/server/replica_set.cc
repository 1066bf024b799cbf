// The daemon's replicas (replica_set.h): their processes' starts and exits, their probes, memory,
// and each agent's health as they make it.
#include "replica_set.h"

#include <algorithm>
#include <utility>

namespace mend::server_detail {
namespace {

// What decides whether a supervised agent's processes must be replaced on reload. A scaled
// agent's replicas stay when only its scaling options changed (its scaler starts afresh).
bool same_process(const AgentConfig& a, const AgentConfig& b) {
  const bool same_range =
      a.scaled() == b.scaled() &&
      (!a.scaled() || (a.scaling->scaler.min_replicas == b.scaling->scaler.min_replicas &&
                       a.scaling->scaler.max_replicas == b.scaling->scaler.max_replicas));
  return a.command == b.command && a.args == b.args && a.env == b.env &&
         a.working_dir == b.working_dir && a.replicas == b.replicas && same_range &&
         a.stop_timeout == b.stop_timeout;
}

bool same_scaling(const ReplicaScalerOptions& a, const ReplicaScalerOptions& b) {
  return a.min_replicas == b.min_replicas && a.max_replicas == b.max_replicas &&
         a.replica_capacity == b.replica_capacity && a.latency_threshold == b.latency_threshold &&
         a.scale_up_cooldown == b.scale_up_cooldown && a.scale_down_delay == b.scale_down_delay &&
         a.scale_down_utilisation == b.scale_down_utilisation && a.start_timeout == b.start_timeout;
}

// Whether the replica counts for its agent's health and takes calls.
bool serving(const Replica& r) {
  return r.in_service && !r.retiring;
}

}  // namespace

ReplicaSet::ReplicaSet(const Clock& clock, ReplicaSetHost& host) : clock_(clock), host_(host) {}

ReplicaSet::Reconfiguration ReplicaSet::plan_reconfigure(const Config& config,
                                                         const Config* before) const {
  Reconfiguration plan;
  MutexLock lock(mu_);
  for (const Replica& r : replicas_) {
    const AgentConfig* now = config.agent(r.agent);
    const AgentConfig* was = before != nullptr ? before->agent(r.agent) : nullptr;
    const bool unchanged = now != nullptr && was != nullptr &&
                           now->supervised() == was->supervised() &&
                           (now->supervised() ? same_process(*now, *was) : now->urls == was->urls);
    if (unchanged) {
      Replica kept = r;
      kept.probes = now->probes;
      kept.health.reconfigure(now->probes);
      kept.memory_limit = now->memory_limit_bytes;
      plan.keep.push_back(std::move(kept));
    } else if (!r.process.empty()) {
      plan.to_stop.push_back(r.process);
    }
  }
  return plan;
}

std::uint64_t ReplicaSet::new_epoch() {
  MutexLock lock(mu_);
  return next_epoch_++;
}

void ReplicaSet::replace(const std::vector<Replica>& keep, std::vector<Replica> added) {
  MutexLock lock(mu_);
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

void ReplicaSet::report_health() {
  MutexLock lock(mu_);
  for (const Replica& r : replicas_) report_agent(r.agent);
}

bool ReplicaSet::report_agent(const std::string& agent) {
  AgentReplicaHealth health;
  bool any = false;
  for (const Replica& r : replicas_) {
    if (r.agent != agent || !serving(r)) continue;
    any = true;
    health.any_ready = health.any_ready || r.health.is_ready();
    if (r.health.is_ready() && r.probed) health.ready_unprobed = false;
  }
  return any && host_.agent_health(agent, health);
}

std::string ReplicaSet::on_process_event(const ProcessEvent& event) {
  std::string agent;
  MutexLock lock(mu_);
  for (Replica& r : replicas_) {
    if (r.process != event.name) continue;
    agent = r.agent;
    if (event.kind == ProcessEvent::Kind::started) {
      r.port_in_use = false;  // what it says from now on is about this start
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
    host_.replica_readiness(r.agent, r.url, r.health.is_ready());
    report_agent(r.agent);
  }
  return agent;
}

std::vector<std::string> ReplicaSet::processes_of(const std::string& agent) const {
  std::vector<std::string> processes;
  MutexLock lock(mu_);
  for (const Replica& r : replicas_) {
    if (r.agent == agent && !r.process.empty() && !r.retiring) processes.push_back(r.process);
  }
  return processes;
}

void ReplicaSet::take_out(const std::string& process) {
  MutexLock lock(mu_);
  std::string agent;
  for (Replica& r : replicas_) {
    if (r.process != process) continue;
    r.restarting = true;
    r.health.take_out();
    agent = r.agent;
    host_.replica_readiness(r.agent, r.url, false);
  }
  if (!agent.empty()) report_agent(agent);
}

std::vector<ReplicaSet::DueProbe> ReplicaSet::take_due(TimePoint now,
                                                       const ProcessLookup& status_of) {
  std::vector<DueProbe> due;
  MutexLock lock(mu_);
  for (Replica& r : replicas_) {
    if (r.probing || r.restarting || r.retiring) continue;
    if (!r.process.empty()) {
      // Only a process whose start the set has heard of: the started event resets the replica's
      // probes, and must not undo what a probe of the new process found.
      std::optional<ProcessStatus> status = status_of(r.process);
      if (!status || !status->running || status->pid != r.pid) continue;
    }
    if (std::optional<ProbeKind> kind = r.health.take_due(now)) {
      r.probing = true;
      due.push_back({r.epoch, *kind});
    }
  }
  return due;
}

std::optional<ReplicaSet::ProbeTarget> ReplicaSet::probe_target(std::uint64_t epoch,
                                                                ProbeKind kind) const {
  MutexLock lock(mu_);
  const Replica* r = by_epoch(epoch);
  if (r == nullptr) return std::nullopt;
  return ProbeTarget{r->url + r->probes.path, r->health.timeout(kind)};
}

std::optional<ReplicaSet::ProbeOutcome> ReplicaSet::record_probe(std::uint64_t epoch,
                                                                 ProbeKind kind, bool ok,
                                                                 const std::string& detail,
                                                                 TimePoint now) {
  MutexLock lock(mu_);
  // Found by epoch: a replica restarted, replaced or reordered by a reload meanwhile is not this
  // probe's business any more.
  Replica* r = by_epoch(epoch);
  if (r == nullptr) return std::nullopt;
  r->probing = false;
  if (r->restarting) return std::nullopt;
  r->last_probe = detail;
  r->probed = true;
  ProbeOutcome outcome;
  outcome.agent = r->agent;
  const ProbeVerdict verdict = r->health.record(kind, ok, now);
  switch (verdict.change) {
    case ProbeVerdict::Change::none:
      break;
    case ProbeVerdict::Change::ready:
      outcome.transition = "ready";
      if (!r->in_service && !r->retiring) {
        // The health recheck of a scale-up: it takes calls from now on.
        r->in_service = true;
        outcome.admitted = true;
        if (auto it = scaling_.find(r->agent); it != scaling_.end()) {
          it->second.scaler.replica_ready(now);
        }
        for (const Replica& other : replicas_) {
          if (other.agent == r->agent && serving(other)) ++outcome.replicas_in_service;
        }
      }
      break;
    case ProbeVerdict::Change::not_ready:
      outcome.transition = "not ready: " + detail;
      break;
    case ProbeVerdict::Change::restart:
      outcome.restart_process = r->process;
      r->restarting = true;
      outcome.transition =
          kind == ProbeKind::liveness
              ? "liveness probe failed " + std::to_string(verdict.failures) + " times: " + detail
              : "startup probe failed " + std::to_string(verdict.failures) + " times";
      break;
  }
  if (!outcome.transition.empty()) host_.replica_transition(outcome.agent, outcome.transition);
  if (verdict.change != ProbeVerdict::Change::none) {
    host_.replica_readiness(r->agent, r->url, r->health.is_ready());
  }
  // Its probes say it cannot serve (not a process that exited or restarts: supervision speaks
  // for those): the daemon heals it and tells on-call.
  const bool fell = report_agent(r->agent);
  outcome.agent_fell = fell && verdict.change == ProbeVerdict::Change::not_ready;
  return outcome;
}

void ReplicaSet::probe_abandoned(std::uint64_t epoch) {
  MutexLock lock(mu_);
  if (Replica* r = by_epoch(epoch)) r->probing = false;
}

std::vector<ReplicaSet::OverMemory> ReplicaSet::over_memory(const ProcessLookup& status_of) {
  std::vector<OverMemory> over;
  MutexLock lock(mu_);
  for (Replica& r : replicas_) {
    if (r.process.empty() || r.memory_limit == 0 || r.healing || r.restarting || r.retiring) {
      continue;
    }
    std::optional<ProcessStatus> status = status_of(r.process);
    if (!status || !status->running || status->rss_bytes <= r.memory_limit) continue;
    r.healing = true;
    over.push_back({r.agent, 100.0 * static_cast<double>(status->rss_bytes) /
                                 static_cast<double>(r.memory_limit)});
  }
  return over;
}

void ReplicaSet::healing_done(const std::string& agent) {
  MutexLock lock(mu_);
  for (Replica& r : replicas_) {
    if (r.agent == agent) r.healing = false;
  }
}

void ReplicaSet::port_in_use(const std::string& process) {
  MutexLock lock(mu_);
  for (Replica& r : replicas_) {
    if (r.process == process && !process.empty()) r.port_in_use = true;
  }
}

bool ReplicaSet::take_port_move(const std::string& process, TimePoint now) {
  MutexLock lock(mu_);
  for (Replica& r : replicas_) {
    if (r.process != process || process.empty()) continue;
    const bool said = std::exchange(r.port_in_use, false);
    if (!said || r.retiring) return false;
    std::erase_if(r.port_moves, [&](TimePoint at) { return now - at >= kPortMoveWindow; });
    if (static_cast<int>(r.port_moves.size()) >= kMaxPortMoves) return false;
    r.port_moves.push_back(now);
    return true;
  }
  return false;
}

bool ReplicaSet::move_port(const std::string& process, unsigned short port) {
  MutexLock lock(mu_);
  for (Replica& r : replicas_) {
    if (r.process != process || process.empty()) continue;
    r.port = port;
    r.url = "http://127.0.0.1:" + std::to_string(port);
    r.health.exited();
    r.pid = 0;
    r.probing = false;
    r.epoch = next_epoch_++;
    host_.replica_readiness(r.agent, r.url, false);
    report_agent(r.agent);
    return true;
  }
  return false;
}

std::map<std::string, int> ReplicaSet::ready_counts() const {
  std::map<std::string, int> ready;
  MutexLock lock(mu_);
  for (const Replica& r : replicas_) ready[r.agent] += serving(r) && r.health.is_ready() ? 1 : 0;
  return ready;
}

void ReplicaSet::configure_scaling(const Config& config, TimePoint now) {
  MutexLock lock(mu_);
  std::map<std::string, Scaling> scaling;
  for (const AgentConfig& agent : config.agents) {
    if (!agent.scaled()) continue;
    const ReplicaScalerOptions& options = agent.scaling->scaler;
    auto it = scaling_.find(agent.name);
    if (it != scaling_.end() && same_scaling(it->second.options, options)) {
      it->second.interval = agent.scaling->interval;
      it->second.drain = agent.policies.call_timeout;
      scaling.emplace(agent.name, std::move(it->second));
      continue;
    }
    int serving_now = 0;
    for (const Replica& r : replicas_) {
      if (r.agent == agent.name && serving(r)) ++serving_now;
    }
    scaling.emplace(agent.name, Scaling{ReplicaScaler(options, serving_now), options,
                                        agent.scaling->interval, agent.policies.call_timeout,
                                        now + agent.scaling->interval, LoadReading{}});
  }
  scaling_ = std::move(scaling);
}

std::vector<std::string> ReplicaSet::scaled_agents() const {
  std::vector<std::string> agents;
  MutexLock lock(mu_);
  for (const auto& [agent, scaling] : scaling_) agents.push_back(agent);
  return agents;
}

std::vector<ReplicaSet::ScalingStep> ReplicaSet::observe_scaling(
    TimePoint now, const std::map<std::string, LoadReading>& loads) {
  std::vector<ScalingStep> steps;
  MutexLock lock(mu_);
  for (auto& [agent, scaling] : scaling_) {
    if (now < scaling.next) continue;
    scaling.next = now + scaling.interval;
    auto load = loads.find(agent);
    if (load == loads.end()) continue;
    const LoadReading& total = load->second;
    const LoadReading& last = scaling.last;
    // Totals only grow; a smaller one (counters reset) counts from zero.
    auto since = [](std::uint64_t now_total, std::uint64_t before) {
      return now_total >= before ? now_total - before : now_total;
    };
    ScalingSignals signals;
    signals.in_flight = total.calls_out;
    signals.rejected = since(total.refused, last.refused);
    signals.pool_exhausted = since(total.pool_exhausted, last.pool_exhausted);
    const std::uint64_t ended = since(total.calls_ended, last.calls_ended);
    if (ended > 0) {
      const bool reset = total.calls_ended < last.calls_ended;
      const Duration sum = reset ? total.latency_sum : total.latency_sum - last.latency_sum;
      signals.latency = sum / static_cast<Duration::rep>(ended);
    }
    scaling.last = total;
    ScalingStep step{agent, scaling.scaler.observe(signals, now), {}};
    const ScalingAction action = step.decision.action;
    if (action == ScalingAction::scale_down || action == ScalingAction::start_abandoned) {
      // scale_down: the replica added last of those in service; start_abandoned: the one starting.
      Replica* chosen = nullptr;
      for (Replica& r : replicas_) {
        if (r.agent != agent || r.retiring || r.process.empty()) continue;
        const bool fits = action == ScalingAction::scale_down ? r.in_service : !r.in_service;
        if (fits) chosen = &r;
      }
      if (chosen != nullptr) {
        chosen->in_service = false;
        chosen->retiring = true;
        chosen->retire_by = action == ScalingAction::scale_down ? now + scaling.drain : now;
        step.process = chosen->process;
        report_agent(agent);
      }
    }
    if (step.decision.report) steps.push_back(std::move(step));
  }
  return steps;
}

int ReplicaSet::free_index(const std::string& agent) const {
  MutexLock lock(mu_);
  for (int index = 0;; ++index) {
    const bool used = std::any_of(replicas_.begin(), replicas_.end(), [&](const Replica& r) {
      return r.agent == agent && r.index == index;
    });
    if (!used) return index;
  }
}

void ReplicaSet::add_scaled(Replica replica) {
  MutexLock lock(mu_);
  replica.in_service = false;
  replica.retiring = false;
  replicas_.push_back(std::move(replica));
}

void ReplicaSet::scale_up_failed(const std::string& agent, const std::string& process,
                                 TimePoint now) {
  MutexLock lock(mu_);
  if (!process.empty()) {
    std::erase_if(replicas_, [&](const Replica& r) { return r.process == process; });
  }
  if (auto it = scaling_.find(agent); it != scaling_.end()) {
    it->second.scaler.replica_start_failed(now);
  }
}

std::vector<std::string> ReplicaSet::take_retired(
    TimePoint now, const std::function<bool(const std::string&)>& idle) {
  std::vector<std::string> due;
  std::vector<std::pair<std::size_t, std::string>> candidates;  // (replica, agent)
  {
    MutexLock lock(mu_);
    for (std::size_t i = 0; i < replicas_.size(); ++i) {
      const Replica& r = replicas_[i];
      if (r.retiring && !r.restarting) candidates.emplace_back(i, r.agent);
    }
  }
  if (candidates.empty()) return due;
  // Asked without the lock: `idle` reads the daemon's counters.
  std::map<std::string, bool> idle_agents;
  for (const auto& [i, agent] : candidates) {
    if (!idle_agents.count(agent)) idle_agents[agent] = idle(agent);
  }
  MutexLock lock(mu_);
  for (Replica& r : replicas_) {
    if (!r.retiring || r.restarting) continue;
    auto it = idle_agents.find(r.agent);
    const bool drained = r.left_endpoints && it != idle_agents.end() && it->second;
    if (drained || now >= r.retire_by) {
      r.restarting = true;  // marks it taken: returned once, no probes
      due.push_back(r.process);
    }
  }
  return due;
}

void ReplicaSet::forget(const std::string& process) {
  MutexLock lock(mu_);
  std::erase_if(replicas_, [&](const Replica& r) { return r.process == process; });
}

std::map<std::string, std::vector<std::string>> ReplicaSet::endpoints() {
  std::map<std::string, std::vector<std::string>> endpoints;
  MutexLock lock(mu_);
  for (Replica& r : replicas_) {
    if (serving(r)) endpoints[r.agent].push_back(r.url);
    if (r.retiring) r.left_endpoints = true;
  }
  return endpoints;
}

std::map<std::string, int> ReplicaSet::in_service_counts() const {
  std::map<std::string, int> counts;
  MutexLock lock(mu_);
  for (const Replica& r : replicas_) counts[r.agent] += serving(r) ? 1 : 0;
  return counts;
}

bool ReplicaSet::every_agent_ready() const {
  const std::map<std::string, int> ready = ready_counts();
  return std::all_of(ready.begin(), ready.end(), [](const auto& a) { return a.second > 0; });
}

std::vector<Replica> ReplicaSet::snapshot() const {
  MutexLock lock(mu_);
  return replicas_;
}

Replica* ReplicaSet::by_epoch(std::uint64_t epoch) {
  for (Replica& r : replicas_) {
    if (r.epoch == epoch) return &r;
  }
  return nullptr;
}

const Replica* ReplicaSet::by_epoch(std::uint64_t epoch) const {
  for (const Replica& r : replicas_) {
    if (r.epoch == epoch) return &r;
  }
  return nullptr;
}

}  // namespace mend::server_detail
