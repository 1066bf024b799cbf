// File: mend/core/health_monitor.h
//
// The specification's self-healing loop, per agent: probe on a schedule (k8s-like: period, timeout,
// failure and success thresholds, mend/core/health.h), keep the registry's health state current so
// that the workflow fails over from unhealthy agents, and when an agent turns degraded or
// unhealthy, run self-healing (mend/core/recovery.h) on what its health answer shows; when that
// does not bring it back, alert people (an escalation: high, service_unavailable, for that agent).
//
//   mend::HealthMonitor monitor(agents, {}, &healer, &escalator);
//   for (;;) {                                   // the daemon's loop
//     for (const auto& t : monitor.check_due(operations, clock.now())) log(t);
//     sleep_until(monitor.next_due());
//   }
//
// Thread-safety: check_due() may be called from any thread; passes are serialised (a pass holds
// a mutex while it probes, which blocks). state() and next_due() are safe at any time.
#ifndef MEND_CORE_HEALTH_MONITOR_H_
#define MEND_CORE_HEALTH_MONITOR_H_

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mend/core/agents.h"
#include "mend/core/health.h"
#include "mend/core/recovery.h"
#include "mend/core/thread_annotations.h"
#include "mend/core/workflow.h"

namespace mend {

struct HealthMonitorOptions {
  ProbeOptions probe;  // k8s defaults: every 10 s, 1 s timeout, 3 failures, 1 success
};

// An agent whose health state changed during a pass, and what was done about it.
struct HealthTransition {
  std::string agent;
  HealthState from = HealthState::unknown;
  HealthState to = HealthState::unknown;  // after healing, when healing ran
  std::string detail;                     // the probe's detail
  std::optional<HealingReport> healing;
  std::optional<EscalationTaken> alert;
  std::string alert_error;  // the escalation sink failed: why
};

class HealthMonitor {
 public:
  // `healer` and `alerts` may be null: no self-healing, no alerts.
  HealthMonitor(AgentRegistry& agents, HealthMonitorOptions options = {},
                SelfHealer* healer = nullptr, EscalationSink* alerts = nullptr);

  // Probes every registered agent whose probe is due at `now` through `ops`. An agent seen for
  // the first time is due after probe.initial_delay.
  std::vector<HealthTransition> check_due(AgentOperations& ops, TimePoint now);

  HealthState state(const std::string& agent) const;
  // The earliest next probe of the agents seen so far; nullopt before the first pass.
  std::optional<TimePoint> next_due() const;

 private:
  HealthTracker& tracker(const std::string& agent, TimePoint now) MEND_REQUIRES(mu_);

  AgentRegistry& agents_;
  HealthMonitorOptions options_;
  SelfHealer* healer_;
  EscalationSink* alerts_;
  Mutex pass_mu_;     // one pass at a time
  mutable Mutex mu_;  // guards trackers_
  std::map<std::string, std::unique_ptr<HealthTracker>> trackers_ MEND_GUARDED_BY(mu_);
};

}  // namespace mend

#endif  // MEND_CORE_HEALTH_MONITOR_H_
