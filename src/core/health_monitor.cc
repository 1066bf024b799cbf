#include "mend/core/health_monitor.h"

namespace mend {

HealthMonitor::HealthMonitor(AgentRegistry& agents, HealthMonitorOptions options,
                             SelfHealer* healer, EscalationSink* alerts)
    : agents_(agents), options_(options), healer_(healer), alerts_(alerts) {
  validate_probe_options(options_.probe);  // bad options throw here, not at the first pass
}

HealthTracker& HealthMonitor::tracker(const std::string& agent, TimePoint now) {
  auto it = trackers_.find(agent);
  if (it == trackers_.end()) {
    it = trackers_.emplace(agent, std::make_unique<HealthTracker>(options_.probe, now)).first;
  }
  return *it->second;
}

std::vector<HealthTransition> HealthMonitor::check_due(AgentOperations& ops, TimePoint now) {
  MutexLock pass(pass_mu_);
  std::vector<HealthTransition> transitions;
  for (const std::string& name : agents_.names()) {
    HealthTracker* t = nullptr;
    {
      MutexLock lock(mu_);
      t = &tracker(name, now);
    }
    if (!t->probe_due(now)) continue;
    const HealthState before = t->state();
    ProbeResult result;
    try {
      result = ops.probe(name);
    } catch (const std::exception& e) {
      // One agent's probe that throws is that agent's failed probe, not the end of the pass.
      result = ProbeResult{};
      result.detail = e.what();
    }
    HealthState after = t->record(result, now);
    if (after == before) {
      agents_.set_health(name, after);
      continue;
    }
    HealthTransition tr{.agent = name, .from = before, .to = after, .detail = result.detail};
    if (healer_ != nullptr && (after == HealthState::degraded || after == HealthState::unhealthy)) {
      Symptoms symptoms;
      symptoms.health = after;
      symptoms.metrics = result.metrics;
      symptoms.detail = result.detail;
      HealingReport report = healer_->heal(name, symptoms, ops, now);
      if (report.recovered) {
        // The healer's own re-probe is a probe like any other.
        ProbeResult reprobe;
        reprobe.answered = true;
        reprobe.reported = report.health_after;
        reprobe.detail = "after " + report.recovery.action;
        after = t->record(reprobe, now);
        tr.to = after;
      }
      tr.healing = std::move(report);
    }
    agents_.set_health(name, after);
    if (alerts_ != nullptr && after == HealthState::unhealthy) {
      EscalationRequest request;
      request.level = Severity::high;
      request.error = Error::classified_as(ErrorType::service_unavailable, Severity::high,
                                           "agent " + name + " is unhealthy: " + result.detail);
      request.agent = name;
      request.task_type = "health_check";
      request.labels = {
          {"agent", name}, {"error_type", "service_unavailable"}, {"task_type", "health_check"}};
      Result<EscalationTaken> taken =
          detail::guarded([&]() -> Result<EscalationTaken> { return alerts_->escalate(request); });
      if (taken.ok()) {
        tr.alert = std::move(*taken);
      } else {
        tr.alert_error = taken.error().describe();
      }
    }
    if (tr.to != tr.from) transitions.push_back(std::move(tr));
  }
  return transitions;
}

HealthState HealthMonitor::state(const std::string& agent) const {
  MutexLock lock(mu_);
  auto it = trackers_.find(agent);
  return it == trackers_.end() ? HealthState::unknown : it->second->state();
}

std::optional<TimePoint> HealthMonitor::next_due() const {
  MutexLock lock(mu_);
  std::optional<TimePoint> next;
  for (const auto& [name, t] : trackers_) {
    const TimePoint at = t->next_probe_at();
    if (!next || at < *next) next = at;
  }
  return next;
}

}  // namespace mend
