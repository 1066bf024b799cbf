// The daemon's own metrics (docs/api.md lists them), as a part of their own: the families the
// daemon counts into, registered once on a MetricsRegistry, and the gauges read at scrape time
// from what the daemon's other parts report, handed in as functions so that this file knows none
// of them. And the workflow's events in the shape the event stream sends them.
//
//   MetricsRegistry registry;
//   DaemonMetrics metrics(registry);                  // every counted family, registered once
//   metrics.tasks->with({"succeeded"}).inc();
//   metrics.add_readings(registry, {.circuits = [&] { return circuit_states(); }, ...});
//   std::string body = registry.render();             // GET /metrics
//
// A reading whose function is empty, or answers nullopt (the part does not exist yet: the store
// opens after the server that scrapes), shows no samples.
//
// Thread-safety: the families are safe to update from any thread (mend/server/metrics.h); the
// reading functions are called on the scraping thread and must be safe to call from it.
// add_readings() is called once, before the registry is shared.
#ifndef MEND_SERVER_DAEMON_METRICS_H_
#define MEND_SERVER_DAEMON_METRICS_H_

#include <cstddef>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mend/core/circuit_breaker.h"
#include "mend/core/events.h"
#include "mend/core/replica_balancer.h"
#include "mend/core/retry_budget.h"
#include "mend/runtime/supervisor.h"
#include "mend/server/metrics.h"
#include "mend/store/escalation_backlog.h"
#include "mend/store/task_writer.h"

namespace mend::server_detail {

// One replica as its agent's balancer sees it: the replica is its index among the agent's
// endpoints.
struct ReplicaReading {
  std::string agent;
  int replica = 0;
  ReplicaSnapshot balance;
};

// Where the scrape-time gauges read from.
struct DaemonReadings {
  std::function<std::vector<std::pair<std::string, CircuitState>>()> circuits;  // per agent
  std::function<std::map<std::string, int>()> ready_replicas;                   // per agent
  std::function<std::vector<ProcessStatus>()> processes;  // supervised replicas
  std::function<std::optional<TaskWriter::Health>()> task_writes;
  std::function<std::optional<EscalationBacklog::Stats>()> escalation_writes;
  std::function<std::size_t()> event_stream_clients;
  std::function<std::vector<ReplicaReading>()> replicas;  // every agent's, from its balancer
  std::function<std::map<std::string, int>()> replicas_in_service;  // per agent
  // Per agent with a retry budget: its window's figures (mend/core/retry_budget.h).
  std::function<std::vector<std::pair<std::string, RetryBudget::Reading>>()> retry_budgets;
};

class DaemonMetrics {
 public:
  explicit DaemonMetrics(MetricsRegistry& registry);
  // Registers the gauges and counters read at scrape time.
  void add_readings(MetricsRegistry& registry, DaemonReadings readings);

  // The families the daemon counts into. Registered by the constructor: never null.
  CounterFamily* tasks = nullptr;
  HistogramFamily* latency = nullptr;
  GaugeFamily* in_flight = nullptr;
  CounterFamily* attempts = nullptr;
  CounterFamily* retries = nullptr;
  CounterFamily* fallbacks = nullptr;
  CounterFamily* degraded = nullptr;
  CounterFamily* escalations = nullptr;
  CounterFamily* transitions = nullptr;
  CounterFamily* restarts = nullptr;
  CounterFamily* notifications = nullptr;
  CounterFamily* reloads = nullptr;
  CounterFamily* relay_requests = nullptr;
  // mend_replica_scaling_total{agent, direction}: up, down, abandoned (a scale-up's replica not
  // ready in time), failed (its process could not start).
  CounterFamily* scaling = nullptr;
  // mend_task_hedges_total{agent, outcome}: the task API's calls that waited out their hedging
  // delay: won (the hedge's answer was taken), lost (the first call's result was), not_sent (no
  // other replica, or the retry budget refused the hedge).
  CounterFamily* task_hedges = nullptr;
};

// mend_circuit_state's value: 0 closed, 1 half-open, 2 open, 3 isolated.
double circuit_state_value(CircuitState state) noexcept;

// A workflow event as GET /v1/events sends it: kind, at, source, and the fields its kind has
// (task_id, attempt, error_type, severity, delay_seconds, from, to, detail). One JSON line.
std::string workflow_event_json(const Event& event, WallTime at);

// A scaler's decision or its outcome, as GET /v1/events sends it (kind replica_scaling).
struct ScalingEvent {
  std::string agent;
  // scale_up, scale_down, start_abandoned, hold (a saturated agent not scaled up: `held` says
  // why: starting, at_max, cooldown); replica_ready (a scale-up's replica passed its health
  // recheck), start_failed (its process could not start).
  std::string action;
  std::string held;
  int replicas = 0;     // in service once the action is done
  std::string process;  // the replica started, retired or given up, when one is
  std::string detail;   // the scaler's reason
};
std::string scaling_event_json(const ScalingEvent& event, WallTime at);

}  // namespace mend::server_detail

#endif  // MEND_SERVER_DAEMON_METRICS_H_
