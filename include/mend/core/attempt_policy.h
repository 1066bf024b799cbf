// File: mend/core/attempt_policy.h
//
// What happens around one call to an agent, in the one order every caller applies it: the
// workflow (mend/core/workflow.h), the relay of `mend serve`, and the pipeline's retry and breaker
// stages (mend/core/pipeline.h). Sans-IO: the caller makes the call, cuts it off at its time limit
// and waits out the delay; the policy decides, on the clock and random source it is given.
//
//   mend::AttemptPolicy policy(&breaker, retry_policy, &rate_limiter, call_timeout);
//   mend::AttemptPolicy::Admission a =
//       policy.admit(clock, {.retrying = retrying, .health = agent_health, .deadline = deadline});
//   if (!a.allowed()) ...                        // a.refusal says why (see below)
//   Result<std::string> r = call(a.time_limit);  // cut off after it, when set
//   if (r.ok()) policy.succeeded(a.permit, clock);
//   else {
//     mend::AttemptDecision d = policy.failed(a.permit, r.error(), {attempt, previous, deadline},
//                                             clock, random);
//     if (d.retry) { wait(d.delay); ... }        // d.token: see below
//   }
//
// The order, before a call (admit):
//   1. a retry (retrying true) is refused when the agent was marked unhealthy meanwhile
//      (agent_unhealthy);
//   2. no call starts once the caller's deadline has passed (deadline_exceeded);
//   3. the breaker is asked (circuit_open; another call may have opened it during a retry's wait);
//   4. the rate limiter, when the agent has one, takes a token or refuses (rate_limited, with the
//      limiter's error in a.rejection: rate_limit_exceeded/low and its retry_after). It comes
//      after the breaker so that a call the breaker refuses spends no token; its refusal gives
//      the breaker's permit back, unrecorded: the call never left;
//   5. the call's time limit: the caller's own attempt timeout, else the policy's call timeout,
//      and never more than what is left before the deadline.
// The order, for a failed call:
//   1. the breaker hears of it, unless it says nothing about the agent's health: a local refusal
//      (the call never left: cancelled, bulkhead full, rate limited, an inner breaker open) or an
//      error type the breaker is told to ignore;
//   2. a failure of the agent itself (not a local refusal) of a retryable type is counted by the
//      retry budget (as a success is, in succeeded());
//   3. the retry policy decides (attempts, backoff, deadline, the error's category); a retry that
//      goes to another replica (facts.other_replica) after a fast error goes at once, without the
//      backoff's wait, unless the budget sees most of the agent's calls failing;
//   4. a retry is cancelled when the circuit is open (this failure opened it: the retry would
//      only be refused after its wait) or when the caller's stop was requested;
//   5. a retry is paid for from the retry budget, at the price of the failure's kind
//      (RetryBudget::cost_of: cheapest when facts.other_replica says it can go to another
//      replica), or is refused (retry_budget_exhausted). The caller holds the retry (d.token)
//      until the retry's call has answered (or was abandoned): it gives it back with
//      d.token->release_retry(), so that the budget's in-flight floor counts it. The retry of a
//      local refusal (a rate-limited call, retried after the limiter's wait) is not the budget's:
//      it adds nothing to the agent's load.
// A caller that reports a rate-limited admission as a failed call (the workflow does, so that the
// refusal is retried after the limiter's retry_after) passes a.rejection to failed() with
// a.permit: being a local refusal, it reaches neither the breaker nor the budget's failures.
//
// Thread-safety: an AttemptPolicy holds references (and a duration) only; it is as thread-safe as
// the breaker, retry policy, budget and rate limiter it refers to (each is safe to share between
// threads).
#ifndef MEND_CORE_ATTEMPT_POLICY_H_
#define MEND_CORE_ATTEMPT_POLICY_H_

#include <optional>

#include "mend/core/circuit_breaker.h"
#include "mend/core/clock.h"
#include "mend/core/error.h"
#include "mend/core/health.h"
#include "mend/core/random.h"
#include "mend/core/rate_limiter.h"
#include "mend/core/retry.h"
#include "mend/core/retry_budget.h"

namespace mend {

// What the caller knows of the call it is about to make.
struct AdmissionFacts {
  bool retrying = false;                      // a retry of a failed call to the same agent
  HealthState health = HealthState::healthy;  // the agent's, as last known
  std::optional<TimePoint> deadline;          // the task's, when it has one
  // The task's own limit for one call (Task::attempt_timeout): it wins over the call timeout.
  std::optional<Duration> attempt_timeout;
};

// Where a failed call stands in its sequence of attempts.
struct AttemptFacts {
  int attempt = 0;                    // the attempt that failed (0 = the first call)
  Duration previous{};                // the delay before it (zero for the first)
  std::optional<TimePoint> deadline;  // the task's, when it has one
  bool stop_requested = false;        // the caller was asked to stop: no retry
  // The retry can go to a replica of the agent this request has not failed on (one that is not
  // ejected): the retry budget charges it least (mend/core/retry_budget.h).
  bool other_replica = false;
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
    CircuitBreaker::Permit permit;  // held until succeeded(), failed() or ignored()
    // circuit_open, agent_unhealthy, deadline_exceeded, rate_limited; none: the call may go.
    StopReason refusal = StopReason::none;
    // rate_limited: the limiter's error, for the caller to pass on as the call's (its type,
    // message and retry_after are what the agent's own 429 would say).
    std::optional<Error> rejection;
    // How long the call may take (the caller cuts it off then); nullopt: no limit of the
    // policy's or the caller's, the transport's default applies.
    std::optional<Duration> time_limit;
    bool allowed() const noexcept { return refusal == StopReason::none; }
  };

  // `breaker` may be null (a retry stage without one), and so may `rate_limiter` (no rate limit).
  // `call_timeout`: the time limit of a call whose caller sets none of its own; nullopt: none.
  // The pointed-to objects must outlive the policy.
  AttemptPolicy(CircuitBreaker* breaker, const RetryPolicy& retry,
                RateLimiter* rate_limiter = nullptr,
                std::optional<Duration> call_timeout = std::nullopt) noexcept
      : breaker_(breaker),
        retry_(retry),
        rate_limiter_(rate_limiter),
        call_timeout_(call_timeout) {}

  // Before a call: steps 1-5 of "before a call" above.
  Admission admit(const Clock& clock, const AdmissionFacts& facts = {}) const;
  // The call answered: the breaker closes a step, the budget counts it (`retry`: it was a retry of
  // the request, not its first call).
  void succeeded(const CircuitBreaker::Permit& permit, const Clock& clock,
                 bool retry = false) const;
  // The call ended in a way that says nothing about the agent (an unusable task, mend stopping).
  void ignored(const CircuitBreaker::Permit& permit) const;
  // The call failed with `error` (classified): steps 1-5 of "for a failed call" above.
  // One draw from `random` (the backoff's jitter) unless the caller's stop was requested.
  AttemptDecision failed(const CircuitBreaker::Permit& permit, const Error& error,
                         const AttemptFacts& facts, const Clock& clock, RandomSource& random) const;
  // Steps 2, 3 and 5 of a failed call alone (no breaker, no circuit check): for a retry stage whose
  // breaker, if any, is a stage of its own.
  AttemptDecision decide_retry(const Error& error, const AttemptFacts& facts, TimePoint now,
                               RandomSource& random) const;

  // Step 1 of a failed call alone, for a breaker that is a stage of its own.
  static void record_failure(CircuitBreaker& breaker, const CircuitBreaker::Permit& permit,
                             const Error& error, const Clock& clock);
  // A local refusal: the call never reached the agent, so it says nothing of its health.
  static bool refused_locally(const Error& error) noexcept;

 private:
  CircuitBreaker* breaker_;
  const RetryPolicy& retry_;
  RateLimiter* rate_limiter_;
  std::optional<Duration> call_timeout_;
};

}  // namespace mend

#endif  // MEND_CORE_ATTEMPT_POLICY_H_
