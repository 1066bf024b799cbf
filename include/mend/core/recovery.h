// File: mend/core/recovery.h
//
// Self-healing: the user's specification's automated recovery agent. When an agent fails with a
// system or resource error, mend
//
//   1. diagnoses an issue type from the symptoms (diagnose());
//   2. checks the agent's restart intensity (RestartIntensity, OTP's: at most 1 recovery in 5 s,
//      beyond that recovery is not working and a person must look);
//   3. runs the issue's recovery strategy (RecoveryStrategies) through AgentOperations, the
//      actions that the daemon implements for real (admin hooks, process restarts);
//   4. probes the agent again: recovered only when the strategy succeeded and the agent answers
//      healthy or degraded (observed_health() in mend/core/health.h: an answer without a status
//      counts as healthy); otherwise the report says to escalate.
//
// SelfHealer does the four steps. Everything here is pure except what AgentOperations does.
//
//   mend::SelfHealer healer;                           // the specification's four strategies
//   mend::Symptoms s{.error_type = mend::ErrorType::memory_exhausted};
//   mend::HealingReport r = healer.heal("code-reviewer", s, runtime_ops, clock.now());
//   if (r.escalate) ...;  // the workflow and HealthMonitor escalate through their EscalationSink
//
// Issue types are strings: the specification's "high_memory_usage", "connection_pool_exhausted",
// "service_unresponsive" and "database_connection_lost"; RecoveryStrategies::add() takes more.
//
// Thread-safety: diagnose() is pure. RecoveryStrategies' const methods are safe from many
// threads; add() is for setting up before sharing. RestartIntensity is a value, not
// synchronized. SelfHealer is safe from many threads: its per-agent intensity state is under a
// mutex, and strategies run outside the lock (two agents heal at once; the same agent twice at
// once is bounded by its intensity).
#ifndef MEND_CORE_RECOVERY_H_
#define MEND_CORE_RECOVERY_H_

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mend/core/clock.h"
#include "mend/core/error.h"
#include "mend/core/health.h"
#include "mend/core/result.h"
#include "mend/core/thread_annotations.h"

namespace mend {

// The specification's issue types.
inline constexpr std::string_view kHighMemoryUsage = "high_memory_usage";
inline constexpr std::string_view kConnectionPoolExhausted = "connection_pool_exhausted";
inline constexpr std::string_view kServiceUnresponsive = "service_unresponsive";
inline constexpr std::string_view kDatabaseConnectionLost = "database_connection_lost";

// Metric names diagnose() reads (as an agent's /health reports them).
inline constexpr std::string_view kMetricMemoryPercent = "memory_percent";  // 0..100
inline constexpr std::string_view kMetricPoolUse = "pool_use";              // 0..1, in use/size
inline constexpr std::string_view kMetricPoolInUse = "pool_in_use";         // connections
inline constexpr std::string_view kMetricPoolSize = "pool_size";            // connections

struct Symptoms {
  std::optional<ErrorType> error_type;  // the classified error that brought the agent here
  HealthState health = HealthState::unknown;
  std::map<std::string, double> metrics;
  std::string detail;
};

struct DiagnosisOptions {
  double memory_percent_threshold = 90.0;  // memory_percent >= this is high memory usage
  double pool_use_threshold = 0.95;        // pool use (fraction) >= this is an exhausted pool
};

// The issue the symptoms point to; the first matching row wins:
//
//   error_type memory_exhausted, or memory_percent >= threshold    high_memory_usage
//   error_type connection_pool_exhausted, or pool use >= threshold connection_pool_exhausted
//   error_type database_error                                      database_connection_lost
//   error_type service_unavailable, or health unhealthy            service_unresponsive
//     (network_timeout while the health is unhealthy is covered by the latter)
//   anything else                                                  nullopt
//
// Pool use is the pool_use metric, or else pool_in_use / pool_size when both are there and
// pool_size > 0. Metrics that are NaN never match.
std::optional<std::string> diagnose(const Symptoms& symptoms, const DiagnosisOptions& options = {});

// What the runtime implements for real (HTTP admin hooks, process restarts). All blocking.
// Failures are returned as errors; a thrown exception is caught and treated the same.
class AgentOperations {
 public:
  virtual ~AgentOperations() = default;
  virtual ProbeResult probe(const std::string& agent) = 0;
  virtual Result<void> clear_caches(const std::string& agent) = 0;
  virtual Result<void> reset_connection_pools(const std::string& agent) = 0;
  virtual Result<void> increase_connection_limits(const std::string& agent) = 0;
  virtual Result<void> reconnect_database(const std::string& agent) = 0;
  // graceful: stop (SIGTERM, drain) and start; otherwise kill and start.
  virtual Result<void> restart(const std::string& agent, bool graceful) = 0;
  virtual Result<void> wait_until_ready(const std::string& agent, Duration timeout) = 0;
};

struct RecoveryResult {
  bool success = false;
  // memory_cleanup, connection_recovery, service_restart, service_force_restart,
  // database_reconnect; the action attempted also when it failed; empty when none was.
  std::string action;
  // Why it did not succeed: no_strategy, action_failed, strategy_threw,
  // restart_intensity_exceeded, still_unhealthy. Empty on success.
  std::string reason;
  // The failing action's message; on service_force_restart, why the graceful restart failed.
  std::string error;
  // Every operation called, in order, for the timeline: "clear_caches", "restart(graceful)",
  // "restart(force)", "wait_until_ready", "reset_connection_pools",
  // "increase_connection_limits", "reconnect_database", "probe".
  std::vector<std::string> steps;
};

struct RecoveryContext {
  std::string agent;
  std::string issue;
  Symptoms symptoms;
  Duration ready_timeout = std::chrono::seconds(60);  // the specification's: 60 s after a restart
};

class RecoveryStrategies {
 public:
  using Strategy = std::function<RecoveryResult(const RecoveryContext&, AgentOperations&)>;

  // An empty registry: every issue gets no_strategy.
  RecoveryStrategies() = default;

  // The specification's four; the first failing action ends a strategy with {success false,
  // reason action_failed, error}:
  //   high_memory_usage          clear_caches, restart(graceful), wait_until_ready
  //                              -> memory_cleanup
  //   connection_pool_exhausted  reset_connection_pools, increase_connection_limits
  //                              -> connection_recovery
  //   service_unresponsive       restart(graceful), wait_until_ready(ready_timeout)
  //                              -> service_restart; if either fails: restart(force)
  //                              -> service_force_restart
  //   database_connection_lost   reconnect_database -> database_reconnect
  // The memory strategy waits for the restarted agent, which the specification's does not: without
  // the wait, the re-check right after it would probe an agent that is still starting.
  static RecoveryStrategies standard();

  // Replaces the strategy of `issue`, or adds one. An empty strategy removes it.
  void add(std::string issue, Strategy strategy);
  bool has(std::string_view issue) const;

  // Runs the strategy of ctx.issue. Unknown issue: {success false, action "", reason
  // no_strategy}. A strategy that throws: {success false, reason strategy_threw, error what()}.
  RecoveryResult attempt(const RecoveryContext& ctx, AgentOperations& ops) const;

 private:
  std::map<std::string, Strategy, std::less<>> strategies_;
};

struct RestartIntensityOptions {
  int max_restarts = 1;                       // OTP intensity: 1
  Duration period = std::chrono::seconds(5);  // OTP period: 5 s
};

// OTP's supervisor restart intensity: at most max_restarts within any `period`; one more means
// restarting is not helping, and the problem goes upward (to a person). A restart at t is within
// the period at `now` while now - t <= period, as in OTP.
class RestartIntensity {
 public:
  // Throws std::invalid_argument naming the field: max_restarts must not be negative, period
  // must be positive.
  explicit RestartIntensity(RestartIntensityOptions options = {});

  // Records a restart at `now` and returns true, or returns false (recording nothing) when it
  // would make more than max_restarts within the period.
  bool try_record(TimePoint now);
  // Restarts recorded within the period at `now`.
  int recent(TimePoint now) const;

 private:
  void forget_before(TimePoint now);
  RestartIntensityOptions options_;
  std::deque<TimePoint> restarts_;  // oldest first; at most max_restarts kept
};

struct SelfHealingOptions {
  DiagnosisOptions diagnosis;
  RestartIntensityOptions intensity;  // every recovery attempt of an agent counts
  Duration ready_timeout = std::chrono::seconds(60);
};

struct HealingReport {
  std::string agent;
  std::optional<std::string> issue;  // nullopt when the symptoms match no issue
  RecoveryResult recovery;
  // The re-probe's verdict after a strategy ran; the symptoms' health when none ran.
  HealthState health_after = HealthState::unknown;
  bool recovered = false;
  bool escalate = false;  // always !recovered: what self-healing cannot fix goes to a person

  // {"agent","issue" (null when none),"recovery":{"success","action","reason","error","steps"},
  //  "health_after","recovered","escalate"}; empty action/reason/error are left out.
  std::string to_json() const;
};

class SelfHealer {
 public:
  // Throws std::invalid_argument for bad intensity options.
  explicit SelfHealer(SelfHealingOptions options = {},
                      RecoveryStrategies strategies = RecoveryStrategies::standard());

  // diagnose; no issue or no strategy for it: no_strategy, escalate; intensity exceeded: no
  // action, reason restart_intensity_exceeded, escalate; else the strategy, then ops.probe(agent):
  // recovered only when the strategy succeeded and the probe answered healthy or degraded;
  // otherwise escalate (reason still_unhealthy when the strategy itself succeeded). Operations
  // and strategies that fail or throw are reported, never propagated.
  HealingReport heal(const std::string& agent, const Symptoms& symptoms, AgentOperations& ops,
                     TimePoint now);

  // Recovery attempts of `agent` within the intensity period at `now`.
  int recent_attempts(const std::string& agent, TimePoint now) const;

 private:
  const SelfHealingOptions options_;
  const RecoveryStrategies strategies_;
  mutable Mutex mu_;
  std::map<std::string, RestartIntensity, std::less<>> intensity_ MEND_GUARDED_BY(mu_);
};

}  // namespace mend

#endif  // MEND_CORE_RECOVERY_H_
