// File: mend/core/events.h
//
// Every decision a policy takes off the happy path is an `Event`: a retry scheduled, a retry
// loop that gave up, a breaker that changed state, a call rejected by a breaker, bulkhead or
// rate limiter. Later layers turn events into logs, metrics and records; tests assert them.
// Nothing is emitted for a call that simply succeeds, so the happy path pays nothing.
//
//   mend::RecordingEventSink sink;
//   env.events = &sink;
//   pipeline.try_execute(call, {});
//   for (const mend::Event& e : sink.events()) std::puts(e.describe().c_str());
//
// Thread-safety: sinks are called from whichever thread took the decision, possibly many at once,
// and must be thread-safe. RecordingEventSink is. Sinks must not throw and should be quick: a
// slow sink slows down the failing call that emits.
#ifndef MEND_CORE_EVENTS_H_
#define MEND_CORE_EVENTS_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "mend/core/clock.h"
#include "mend/core/error.h"
#include "mend/core/thread_annotations.h"

namespace mend {

enum class CircuitState : std::uint8_t { closed, open, half_open, isolated };
std::string_view to_string(CircuitState state) noexcept;

enum class EventKind : std::uint8_t {
  retry_scheduled,     // a failed attempt will be retried after `delay`
  gave_up,             // a retry loop stopped; `stop` says why
  circuit_transition,  // a breaker went from `from` to `to`
  circuit_rejected,    // an open or isolated breaker refused a call
  bulkhead_rejected,   // no slot and no room to wait
  rate_limited,        // a rate limiter refused a call
  // The workflow's decisions (mend/core/workflow.h); `task_id` names the task.
  agent_skipped,    // an agent in the plan was unavailable; detail says why
  attempt_failed,   // an agent failed; detail is the route taken (retry, fallback, ...)
  fallback_used,    // a task was answered by an agent other than its primary
  self_healing,     // recovery ran for an agent; detail is the issue and its result
  degraded_answer,  // no agent answered: the degraded service did
  escalated,        // a ticket or incident was opened or touched; detail is its id
  task_finished,    // the workflow's outcome; detail is its status
  // A call that could be hedged waited out its hedging delay (mend/core/hedging.h); detail is
  // "won" (the hedge's answer was taken), "lost" (the first call's result was) or "not_sent" (no
  // other replica, or the retry budget refused it).
  hedged,
};
std::string_view to_string(EventKind kind) noexcept;

struct Event {
  EventKind kind = EventKind::retry_scheduled;
  TimePoint at{};
  std::string source;   // the policy's name (breaker key, retry name, ...) or the agent
  std::string task_id;  // the workflow's task, when the event is about one
  int attempt = 0;
  ErrorType error_type = ErrorType::processing_failed;
  Severity severity = Severity::medium;
  Duration delay{};  // retry delay, or how long until a rejecting policy may admit again
  StopReason stop = StopReason::none;
  CircuitState from = CircuitState::closed;
  CircuitState to = CircuitState::closed;
  std::string detail;

  std::string describe() const;
};

class EventSink {
 public:
  virtual ~EventSink() = default;
  virtual void emit(const Event& event) noexcept = 0;
};

// Keeps every event in memory, for tests and the demo.
class RecordingEventSink final : public EventSink {
 public:
  void emit(const Event& event) noexcept override;
  std::vector<Event> events() const;
  std::size_t count(EventKind kind) const;
  void clear();

 private:
  mutable Mutex mu_;
  std::vector<Event> events_ MEND_GUARDED_BY(mu_);
};

}  // namespace mend

#endif  // MEND_CORE_EVENTS_H_
