// The daemon's metrics (docs/api.md lists them): the families registered once, and the
// workflow's events turned into counts and into the event stream.

// clang-format off
#include <utility>  // before Asio's coroutine headers: Boost 1.74's awaitable.hpp forgets it
// clang-format on

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
                           std::vector<Sample> samples;
                           for (const auto& [agent, n] : replicas_.ready_counts())
                             samples.push_back({{agent}, static_cast<double>(n)});
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

}  // namespace mend::server_detail
