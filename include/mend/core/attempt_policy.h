// File: mend/core/attempt_policy.h
//
// What happens around one call to an agent, in the one order every caller applies it: the
// workflow (mend/core/workflow.h), the relay of `mend serve`, and the pipeline's retry and breaker
// stages (mend/core/pipeline.h). Sans-IO: the caller makes the call and waits out the delay; the
// policy decides, on the clock and random source it is given.
//
//   mend::AttemptPolicy policy(&breaker, retry_policy);
//   mend::AttemptPolicy::Admission a = policy.admit(clock, retrying, agent_health);
//   if (!a.allowed()) ...                       // a.refusal: circuit_open or agent_unhealthy
//   Result<std::string> r = call();
//   if (r.ok()) policy.succeeded(a.permit, clock);
//   else {
//     mend::AttemptDecision d = policy.failed(a.permit, r.error(), {attempt, previous, deadline},
//                                             clock, random);
//     if (d.retry) { wait(d.delay); ... }       // d.token: see below
//   }
//
// The order, for a failed call:
//   1. the breaker hears of it, unless it says nothing about the agent's health: a local refusal
//      (the call never left: cancelled, bulkhead full, rate limited, an inner breaker open) or an
//      error type the breaker is told to ignore;
//   2. a failure of the agent itself (not a local refusal) of a retryable type is counted by the
//      retry budget;
//   3. the retry policy decides (attempts, backoff, deadline, the error's category);
//   4. a retry is cancelled when the circuit is open (this failure opened it: the retry would
//      only be refused after its wait) or when the caller's stop was requested;
//   5. a retry takes a token from the retry budget, or is refused (retry_budget_exhausted). The
//      token is the caller's until the retry's call has answered (or was abandoned): it gives it
//      back with d.token->release_retry(), so that the budget bounds the retries in flight.
// Before a retry's call, admit(retrying = true) refuses an agent marked unhealthy meanwhile and
// asks the breaker again (another call may have opened it during the wait).
//
// Thread-safety: an AttemptPolicy holds references only; it is as thread-safe as the breaker,
// retry policy and budget it refers to (each is safe to share between threads).
#ifndef MEND_CORE_ATTEMPT_POLICY_H_
#define MEND_CORE_ATTEMPT_POLICY_H_

#include <optional>

#include "mend/core/circuit_breaker.h"
#include "mend/core/clock.h"
#include "mend/core/error.h"
#include "mend/core/health.h"
#include "mend/core/random.h"
#include "mend/core/retry.h"
#include "mend/core/retry_budget.h"

namespace mend {

// Where a failed call stands in its sequence of attempts.
struct AttemptFacts {
  int attempt = 0;                    // the attempt that failed (0 = the first call)
  Duration previous{};                // the delay before it (zero for the first)
  std::optional<TimePoint> deadline;  // the task's, when it has one
  bool stop_requested = false;        // the caller was asked to stop: no retry
};

struct AttemptDecision {
  bool retry = false;
  Duration delay{};
  StopReason stop = StopReason::none;  // why not, when retry is false
  // Set when the retry took a token from the retry budget: the caller gives it back with
  // release_retry() once the retry's call answered or was abandoned.
  RetryBudget* token = nullptr;
};

class AttemptPolicy {
 public:
  struct Admission {
    CircuitBreaker::Permit permit;          // held until succeeded(), failed() or ignored()
    StopReason refusal = StopReason::none;  // circuit_open, agent_unhealthy
    bool allowed() const noexcept { return refusal == StopReason::none; }
  };

  // `breaker` may be null (a retry stage without one). Both must outlive the policy.
  AttemptPolicy(CircuitBreaker* breaker, const RetryPolicy& retry) noexcept
      : breaker_(breaker), retry_(retry) {}

  // Before a call. A retry (retrying true) is refused when the agent is marked unhealthy.
  Admission admit(const Clock& clock, bool retrying = false,
                  HealthState health = HealthState::healthy) const;
  // The call answered: the breaker closes a step, the budget earns.
  void succeeded(const CircuitBreaker::Permit& permit, const Clock& clock) const;
  // The call ended in a way that says nothing about the agent (an unusable task, mend stopping).
  void ignored(const CircuitBreaker::Permit& permit) const;
  // The call failed with `error` (classified): steps 1-5 above.
  // One draw from `random` (the backoff's jitter) unless the caller's stop was requested.
  AttemptDecision failed(const CircuitBreaker::Permit& permit, const Error& error,
                         const AttemptFacts& facts, const Clock& clock, RandomSource& random) const;
  // Steps 2, 3 and 5 alone (no breaker, no circuit check): for a retry stage whose breaker, if
  // any, is a stage of its own.
  AttemptDecision decide_retry(const Error& error, const AttemptFacts& facts, TimePoint now,
                               RandomSource& random) const;

  // Step 1 alone, for a breaker that is a stage of its own.
  static void record_failure(CircuitBreaker& breaker, const CircuitBreaker::Permit& permit,
                             const Error& error, const Clock& clock);
  // A local refusal: the call never reached the agent, so it says nothing of its health.
  static bool refused_locally(const Error& error) noexcept;

 private:
  CircuitBreaker* breaker_;
  const RetryPolicy& retry_;
};

}  // namespace mend

#endif  // MEND_CORE_ATTEMPT_POLICY_H_
