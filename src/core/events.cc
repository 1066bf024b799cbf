#include "mend/core/events.h"

#include <algorithm>
#include <cstdio>

namespace mend {

std::string_view to_string(CircuitState state) noexcept {
  switch (state) {
    case CircuitState::closed:
      return "closed";
    case CircuitState::open:
      return "open";
    case CircuitState::half_open:
      return "half_open";
    case CircuitState::isolated:
      return "isolated";
  }
  return "unknown";
}

std::string_view to_string(EventKind kind) noexcept {
  switch (kind) {
    case EventKind::retry_scheduled:
      return "retry_scheduled";
    case EventKind::gave_up:
      return "gave_up";
    case EventKind::circuit_transition:
      return "circuit_transition";
    case EventKind::circuit_rejected:
      return "circuit_rejected";
    case EventKind::bulkhead_rejected:
      return "bulkhead_rejected";
    case EventKind::rate_limited:
      return "rate_limited";
    case EventKind::agent_skipped:
      return "agent_skipped";
    case EventKind::attempt_failed:
      return "attempt_failed";
    case EventKind::fallback_used:
      return "fallback_used";
    case EventKind::self_healing:
      return "self_healing";
    case EventKind::degraded_answer:
      return "degraded_answer";
    case EventKind::escalated:
      return "escalated";
    case EventKind::task_finished:
      return "task_finished";
    case EventKind::hedged:
      return "hedged";
  }
  return "unknown";
}

std::string Event::describe() const {
  char buf[160];
  std::string out(to_string(kind));
  out += " [" + source + "]";
  if (!task_id.empty()) out += " task " + task_id;
  switch (kind) {
    case EventKind::retry_scheduled:
      std::snprintf(buf, sizeof buf, " attempt %d failed with %s/%s, retry in %.3f s", attempt,
                    std::string(to_string(error_type)).c_str(),
                    std::string(to_string(severity)).c_str(), to_seconds(delay));
      out += buf;
      break;
    case EventKind::gave_up:
      std::snprintf(buf, sizeof buf, " %s after attempt %d (%s/%s)",
                    std::string(to_string(stop)).c_str(), attempt,
                    std::string(to_string(error_type)).c_str(),
                    std::string(to_string(severity)).c_str());
      out += buf;
      break;
    case EventKind::circuit_transition:
      out += " ";
      out += to_string(from);
      out += " -> ";
      out += to_string(to);
      break;
    case EventKind::circuit_rejected:
    case EventKind::bulkhead_rejected:
    case EventKind::rate_limited:
      if (delay > Duration::zero()) {
        std::snprintf(buf, sizeof buf, " retry after %.3f s", to_seconds(delay));
        out += buf;
      }
      break;
    case EventKind::attempt_failed:
      std::snprintf(buf, sizeof buf, " attempt %d failed with %s/%s", attempt,
                    std::string(to_string(error_type)).c_str(),
                    std::string(to_string(severity)).c_str());
      out += buf;
      break;
    case EventKind::agent_skipped:
    case EventKind::fallback_used:
    case EventKind::self_healing:
    case EventKind::degraded_answer:
    case EventKind::escalated:
    case EventKind::task_finished:
    case EventKind::hedged:
      break;
  }
  if (!detail.empty()) out += " (" + detail + ")";
  return out;
}

void RecordingEventSink::emit(const Event& event) noexcept {
  try {
    MutexLock lock(mu_);
    events_.push_back(event);
  } catch (...) {
    // Out of memory while recording: dropping an event beats taking down the caller.
  }
}

std::vector<Event> RecordingEventSink::events() const {
  MutexLock lock(mu_);
  return events_;
}

std::size_t RecordingEventSink::count(EventKind kind) const {
  MutexLock lock(mu_);
  return static_cast<std::size_t>(std::count_if(events_.begin(), events_.end(),
                                                [&](const Event& e) { return e.kind == kind; }));
}

void RecordingEventSink::clear() {
  MutexLock lock(mu_);
  events_.clear();
}

}  // namespace mend
