// The daemon's replicas (replica_set.h): their processes' starts and exits, their probes, memory,
// and each agent's health as they make it.
#include "replica_set.h"

#include <algorithm>

namespace mend::server_detail {
namespace {

// What decides whether a supervised agent's processes must be replaced on reload.
bool same_process(const AgentConfig& a, const AgentConfig& b) {
  return a.command == b.command && a.args == b.args && a.env == b.env &&
         a.working_dir == b.working_dir && a.replicas == b.replicas &&
         a.stop_timeout == b.stop_timeout;
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
    if (r.agent != agent) continue;
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
    report_agent(r.agent);
  }
  return agent;
}

std::vector<std::string> ReplicaSet::processes_of(const std::string& agent) const {
  std::vector<std::string> processes;
  MutexLock lock(mu_);
  for (const Replica& r : replicas_) {
    if (r.agent == agent && !r.process.empty()) processes.push_back(r.process);
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
  }
  if (!agent.empty()) report_agent(agent);
}

std::vector<ReplicaSet::DueProbe> ReplicaSet::take_due(TimePoint now,
                                                       const ProcessLookup& status_of) {
  std::vector<DueProbe> due;
  MutexLock lock(mu_);
  for (Replica& r : replicas_) {
    if (r.probing || r.restarting) continue;
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
    if (r.process.empty() || r.memory_limit == 0 || r.healing || r.restarting) continue;
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

std::map<std::string, int> ReplicaSet::ready_counts() const {
  std::map<std::string, int> ready;
  MutexLock lock(mu_);
  for (const Replica& r : replicas_) ready[r.agent] += r.health.is_ready() ? 1 : 0;
  return ready;
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
