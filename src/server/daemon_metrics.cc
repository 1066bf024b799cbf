// The daemon's metrics (daemon_metrics.h): the families registered once and the readings at
// scrape time; and the workflow's events turned into counts and into the event stream.

// clang-format off
#include <utility>  // before Asio's coroutine headers: Boost 1.74's awaitable.hpp forgets it
// clang-format on

#include "daemon_metrics.h"

#include <nlohmann/json.hpp>

#include "daemon_impl.h"

namespace mend::server_detail {

namespace net = boost::asio;
using nlohmann::json;

void WorkflowEventSink::emit(const Event& event) noexcept {
  try {
    core_.on_workflow_event(event);
  } catch (...) {
    // Metrics and the event stream must never fail a task.
  }
}

DaemonMetrics::DaemonMetrics(MetricsRegistry& registry) {
  tasks = &registry.counter("mend_tasks_total", "Tasks finished, by outcome.", {"outcome"});
  latency =
      &registry.histogram("mend_task_duration_seconds", "Task latency from submission to outcome.",
                          {"outcome"}, default_latency_buckets());
  in_flight = &registry.gauge("mend_tasks_in_flight", "Tasks running now.", {});
  attempts = &registry.counter("mend_attempts_total", "Calls to agents, by agent and result.",
                               {"agent", "result"});
  retries = &registry.counter("mend_retries_total", "Retries scheduled, by agent.", {"agent"});
  fallbacks = &registry.counter("mend_fallbacks_total",
                                "Tasks answered by a fallback agent, by that agent.", {"agent"});
  degraded = &registry.counter("mend_degraded_answers_total",
                               "Tasks answered by the degraded service.", {"task_type"});
  escalations = &registry.counter("mend_escalations_total", "Escalations carried out, by severity.",
                                  {"severity"});
  transitions = &registry.counter("mend_circuit_transitions_total", "Circuit breaker transitions.",
                                  {"agent", "to"});
  restarts = &registry.counter("mend_agent_restarts_total", "Restarts of supervised agents.",
                               {"agent", "reason"});
  notifications = &registry.counter("mend_notifications_total",
                                    "Notification deliveries, by result.", {"result"});
  reloads = &registry.counter("mend_config_reloads_total", "Configuration reloads, by result.",
                              {"result"});
  relay_requests = &registry.counter("mend_relay_requests_total",
                                     "Requests through a relay, by its agent and how they ended.",
                                     {"relay", "outcome"});
  scaling = &registry.counter(
      "mend_replica_scaling_total",
      "Scaling of agents with replicas: {min, max}, by direction: up, down, abandoned (the new "
      "replica was not ready in time), failed (it could not be started).",
      {"agent", "direction"});
  task_hedges = &registry.counter(
      "mend_task_hedges_total",
      "Task calls that waited out their agent's hedging delay, by how the hedge ended: won (its "
      "answer was taken), lost (the first call's result was), not_sent (no other replica, or the "
      "retry budget refused it).",
      {"agent", "outcome"});
}

double circuit_state_value(CircuitState state) noexcept {
  switch (state) {
    case CircuitState::closed:
      return 0;
    case CircuitState::half_open:
      return 1;
    case CircuitState::open:
      return 2;
    default:
      return 3;
  }
}

void DaemonMetrics::add_readings(MetricsRegistry& registry, DaemonReadings readings) {
  registry.gauge_callback("mend_circuit_state",
                          "Circuit state per agent: 0 closed, 1 half-open, 2 open, 3 isolated.",
                          {"agent"}, [read = std::move(readings.circuits)] {
                            std::vector<Sample> samples;
                            if (!read) return samples;
                            for (const auto& [agent, state] : read())
                              samples.push_back({{agent}, circuit_state_value(state)});
                            return samples;
                          });
  registry.gauge_callback("mend_agent_ready_replicas", "Replicas of each agent that are ready.",
                          {"agent"}, [read = std::move(readings.ready_replicas)] {
                            std::vector<Sample> samples;
                            if (!read) return samples;
                            for (const auto& [agent, n] : read())
                              samples.push_back({{agent}, static_cast<double>(n)});
                            return samples;
                          });
  registry.gauge_callback("mend_agent_replicas",
                          "Replicas of each agent in service (taking calls): for an agent with "
                          "replicas: {min, max}, what its scaling decided.",
                          {"agent"}, [read = std::move(readings.replicas_in_service)] {
                            std::vector<Sample> samples;
                            if (!read) return samples;
                            for (const auto& [agent, n] : read())
                              samples.push_back({{agent}, static_cast<double>(n)});
                            return samples;
                          });
  registry.gauge_callback("mend_agent_rss_bytes", "Resident memory of each supervised replica.",
                          {"process"}, [read = std::move(readings.processes)] {
                            std::vector<Sample> samples;
                            if (!read) return samples;
                            for (const ProcessStatus& s : read())
                              samples.push_back({{s.name}, static_cast<double>(s.rss_bytes)});
                            return samples;
                          });
  // One function feeds both of a writer's families: each family holds a copy of it.
  auto read_task_writes = [read = std::move(readings.task_writes)] {
    return read ? read() : std::optional<TaskWriter::Health>{};
  };
  registry.counter_callback(
      "mend_store_task_writes_total",
      "Changes of tasks (accepted, waiting, calling, finished with their journal entry) written "
      "to the store, by result: written, failed (a try the store refused: a full disk, ...; "
      "retries included), dropped (given up: too many waited for a retry).",
      {"result"}, [read_task_writes] {
        const std::optional<TaskWriter::Health> h = read_task_writes();
        if (!h) return std::vector<Sample>{};
        return std::vector<Sample>{{{"written"}, static_cast<double>(h->written)},
                                   {{"failed"}, static_cast<double>(h->failed_tries)},
                                   {{"dropped"}, static_cast<double>(h->dropped)}};
      });
  registry.gauge_callback(
      "mend_store_task_writes_pending_retry",
      "Changes of tasks the store refused, kept in memory and written again with backoff.", {},
      [read_task_writes] {
        const std::optional<TaskWriter::Health> h = read_task_writes();
        if (!h) return std::vector<Sample>{};
        return std::vector<Sample>{{{}, static_cast<double>(h->retry_pending)}};
      });
  auto read_escalation_writes = [read = std::move(readings.escalation_writes)] {
    return read ? read() : std::optional<EscalationBacklog::Stats>{};
  };
  registry.counter_callback(
      "mend_store_escalation_writes_total",
      "Escalations (tickets and incidents with their notifications) the store refused, by what "
      "became of them: deferred (kept in memory), written_late (written by a retry), dropped "
      "(given up: too many fingerprints waited); and failed: retries the store refused.",
      {"result"}, [read_escalation_writes] {
        const std::optional<EscalationBacklog::Stats> s = read_escalation_writes();
        if (!s) return std::vector<Sample>{};
        return std::vector<Sample>{{{"deferred"}, static_cast<double>(s->deferred)},
                                   {{"written_late"}, static_cast<double>(s->written_late)},
                                   {{"dropped"}, static_cast<double>(s->dropped)},
                                   {{"failed"}, static_cast<double>(s->failed_tries)}};
      });
  registry.gauge_callback(
      "mend_store_escalations_pending_retry",
      "Escalations the store refused, kept in memory and written again with backoff.", {},
      [read_escalation_writes] {
        const std::optional<EscalationBacklog::Stats> s = read_escalation_writes();
        if (!s) return std::vector<Sample>{};
        return std::vector<Sample>{{{}, static_cast<double>(s->pending_occurrences)}};
      });
  registry.gauge_callback("mend_event_stream_clients", "Clients following GET /v1/events.", {},
                          [read = std::move(readings.event_stream_clients)] {
                            if (!read) return std::vector<Sample>{};
                            return std::vector<Sample>{{{}, static_cast<double>(read())}};
                          });
  // One function feeds the three replica families, each holding a copy of it. Each family reads
  // it at its own turn of the scrape, so their samples may be a call apart.
  auto replica_samples = [read = std::move(readings.replicas)](auto value_of) {
    std::vector<Sample> samples;
    if (!read) return samples;
    for (const ReplicaReading& r : read()) {
      samples.push_back({{r.agent, std::to_string(r.replica)}, value_of(r.balance)});
    }
    return samples;
  };
  registry.gauge_callback(
      "mend_replica_outstanding_calls",
      "Calls sent to each replica and not answered yet, as its agent's balancer counts them.",
      {"agent", "replica"}, [replica_samples] {
        return replica_samples(
            [](const ReplicaSnapshot& b) { return static_cast<double>(b.outstanding); });
      });
  registry.gauge_callback(
      "mend_replica_ejected",
      "1 while a replica is ejected by its agent's outlier detection (it takes no calls), else 0.",
      {"agent", "replica"}, [replica_samples] {
        return replica_samples([](const ReplicaSnapshot& b) { return b.ejected ? 1.0 : 0.0; });
      });
  registry.counter_callback("mend_replica_ejections_total",
                            "Times each replica was ejected by outlier detection.",
                            {"agent", "replica"}, [replica_samples] {
                              return replica_samples([](const ReplicaSnapshot& b) {
                                return static_cast<double>(b.ejections);
                              });
                            });
  // One function feeds the four retry budget families (the window of each agent's budget).
  auto budget_samples = [read = std::move(readings.retry_budgets)](auto value_of) {
    std::vector<Sample> samples;
    if (!read) return samples;
    for (const auto& [agent, r] : read()) samples.push_back({{agent}, value_of(r)});
    return samples;
  };
  registry.gauge_callback(
      "mend_agent_actual_success_ratio",
      "Share of calls to each agent that answered, per attempt, over its retry budget's window.",
      {"agent"}, [budget_samples] {
        return budget_samples([](const RetryBudget::Reading& r) { return r.actual_success(); });
      });
  registry.gauge_callback(
      "mend_agent_effective_success_ratio",
      "Share of requests to each agent that it answered, after retries, over its retry budget's "
      "window.",
      {"agent"}, [budget_samples] {
        return budget_samples([](const RetryBudget::Reading& r) { return r.effective_success(); });
      });
  registry.gauge_callback(
      "mend_retry_budget_spent", "Retry cost spent in each agent's retry budget window.", {"agent"},
      [budget_samples] {
        return budget_samples([](const RetryBudget::Reading& r) { return r.spent; });
      });
  registry.gauge_callback(
      "mend_retry_budget_allowance",
      "Retry cost each agent's retry budget allows over its window (ratio x requests + floor).",
      {"agent"}, [budget_samples] {
        return budget_samples([](const RetryBudget::Reading& r) { return r.allowance; });
      });
}

std::string workflow_event_json(const Event& event, WallTime at) {
  json j = {{"kind", to_string(event.kind)}, {"at", to_iso8601(at)}, {"source", event.source}};
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
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string scaling_event_json(const ScalingEvent& event, WallTime at) {
  json j = {{"kind", "replica_scaling"},
            {"at", to_iso8601(at)},
            {"source", event.agent},
            {"action", event.action},
            {"replicas", event.replicas}};
  if (!event.held.empty()) j["held"] = event.held;
  if (!event.process.empty()) j["process"] = event.process;
  if (!event.detail.empty()) j["detail"] = event.detail;
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

void DaemonCore::register_metrics() {
  // task_writer_ and escalation_backlog_ are set in start(), before the server that scrapes
  // these exists; the functions read them at each scrape.
  m_.add_readings(
      metrics,
      {.circuits =
           [this] {
             std::vector<std::pair<std::string, CircuitState>> states;
             if (auto g = current()) {
               for (const std::string& name : g->agents.names())
                 states.emplace_back(name, g->agents.find(name)->breaker.state());
             }
             return states;
           },
       .ready_replicas = [this] { return replicas_.ready_counts(); },
       .processes =
           [this] { return supervisor_ ? supervisor_->statuses() : std::vector<ProcessStatus>{}; },
       .task_writes = [this]() -> std::optional<TaskWriter::Health> {
         if (!task_writer_) return std::nullopt;
         return task_writer_->health();
       },
       .escalation_writes = [this]() -> std::optional<EscalationBacklog::Stats> {
         if (!escalation_backlog_) return std::nullopt;
         return escalation_backlog_->stats();
       },
       .event_stream_clients = [this] { return events_.subscribers(); },
       .replicas =
           [this] {
             std::vector<ReplicaReading> readings;
             if (auto g = current()) {
               const TimePoint now = clock_.now();
               for (const std::string& name : g->agents.names()) {
                 const std::vector<ReplicaSnapshot> balances =
                     g->agents.find(name)->balancer.snapshot(now);
                 for (std::size_t i = 0; i < balances.size(); ++i) {
                   readings.push_back({name, static_cast<int>(i), balances[i]});
                 }
               }
             }
             return readings;
           },
       .replicas_in_service = [this] { return replicas_.in_service_counts(); },
       .retry_budgets =
           [this] {
             std::vector<std::pair<std::string, RetryBudget::Reading>> readings;
             if (auto g = current()) {
               const TimePoint now = clock_.coarse_now();
               for (const std::string& name : g->agents.names()) {
                 if (RetryBudget* b = g->workflow->retry_options_for(name).budget.get()) {
                   readings.emplace_back(name, b->reading(now));
                 }
               }
             }
             return readings;
           }});
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
    case EventKind::agent_skipped:
      // Saturation for the agent's scaler (ReplicaSet::LoadReading): no room in its bulkhead.
      if (event.detail == "no_capacity") {
        counters(event.source).refused_capacity.fetch_add(1, std::memory_order_relaxed);
      }
      break;
    case EventKind::attempt_failed:
      if (event.detail == "no_capacity") {  // a retry refused for want of room
        counters(event.source).refused_capacity.fetch_add(1, std::memory_order_relaxed);
      }
      break;
    case EventKind::hedged:
      m_.task_hedges->with({event.source, event.detail}).inc();
      break;
    default:
      break;
  }
  // A call that failed with connection_pool_exhausted: a retry, or the route taken after it.
  const bool call_failed = event.kind == EventKind::retry_scheduled ||
                           (event.kind == EventKind::attempt_failed &&
                            (event.detail == "next_replica" || event.detail == "fallback" ||
                             event.detail == "self_healing"));
  if (call_failed && event.error_type == ErrorType::connection_pool_exhausted) {
    counters(event.source).pool_exhausted.fetch_add(1, std::memory_order_relaxed);
  }
  publish(std::string(to_string(event.kind)), workflow_event_json(event, clock_.wall_now()));
}

}  // namespace mend::server_detail
