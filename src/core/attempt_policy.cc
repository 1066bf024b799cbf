#include "mend/core/attempt_policy.h"

namespace mend {

bool AttemptPolicy::refused_locally(const Error& error) noexcept {
  switch (error.stop) {
    case StopReason::cancelled:
    case StopReason::bulkhead_full:
    case StopReason::rate_limited:
    case StopReason::circuit_open:  // an inner breaker's refusal
      return true;
    default:
      return false;
  }
}

AttemptPolicy::Admission AttemptPolicy::admit(const Clock& clock,
                                              const AdmissionFacts& facts) const {
  Admission a;
  if (facts.retrying && facts.health == HealthState::unhealthy) {
    // Marked unhealthy (by its probes, or by a failed self-healing) while the retry waited: the
    // retry goes elsewhere, not to an agent known not to serve.
    a.refusal = StopReason::agent_unhealthy;
    return a;
  }
  // Read once, and only when there is a deadline to measure: the relay admits without one, on
  // its hot path.
  const TimePoint now = facts.deadline ? clock.now() : TimePoint{};
  if (facts.deadline && now >= *facts.deadline) {
    // Its time limit would be nothing: the call could only fail, after having disturbed the agent.
    a.refusal = StopReason::deadline_exceeded;
    return a;
  }
  if (breaker_ != nullptr) {
    a.permit = breaker_->try_acquire(clock);
    if (!a.permit.allowed()) {
      a.refusal = StopReason::circuit_open;
      return a;
    }
  }
  if (rate_limiter_ != nullptr) {
    const RateLimiter::Decision d = rate_limiter_->try_acquire(facts.deadline ? now : clock.now());
    if (!d.allowed) {
      // The call never leaves: the breaker's permit goes back unrecorded (a half-open probe slot
      // is free again), and the caller holds nothing.
      if (breaker_ != nullptr) breaker_->on_ignored(a.permit);
      a.permit = CircuitBreaker::Permit{};
      a.refusal = StopReason::rate_limited;
      a.rejection = rate_limiter_->rejection(d);
      return a;
    }
  }
  // The task's own attempt timeout was chosen for this task: it wins over the agent's default.
  a.time_limit = facts.attempt_timeout ? facts.attempt_timeout : call_timeout_;
  if (facts.deadline) {
    const Duration left = *facts.deadline - now;
    if (!a.time_limit || left < *a.time_limit) a.time_limit = left;
  }
  return a;
}

void AttemptPolicy::succeeded(const CircuitBreaker::Permit& permit, const Clock& clock,
                              bool retry) const {
  if (breaker_ != nullptr) breaker_->on_success(permit, clock);
  if (RetryBudget* budget = retry_.options().budget.get()) budget->record_success(retry);
}

void AttemptPolicy::ignored(const CircuitBreaker::Permit& permit) const {
  if (breaker_ != nullptr) breaker_->on_ignored(permit);
}

AttemptDecision AttemptPolicy::failed(const CircuitBreaker::Permit& permit, const Error& error,
                                      const AttemptFacts& facts, const Clock& clock,
                                      RandomSource& random) const {
  if (breaker_ != nullptr) record_failure(*breaker_, permit, error, clock);
  return decide_retry(error, facts, clock.now(), random);
}

void AttemptPolicy::record_failure(CircuitBreaker& breaker, const CircuitBreaker::Permit& permit,
                                   const Error& error, const Clock& clock) {
  if (refused_locally(error) || breaker.options().ignored.contains(error.type)) {
    breaker.on_ignored(permit);
  } else {
    breaker.on_failure(permit, clock);
  }
}

AttemptDecision AttemptPolicy::decide_retry(const Error& error, const AttemptFacts& facts,
                                            TimePoint now, RandomSource& random) const {
  const RetryOptions& o = retry_.options();
  RetryBudget* budget = o.budget.get();
  // Only failures of the agent drain the budget; a local refusal never reached it.
  if (budget != nullptr && error.stop == StopReason::none && o.retryable.contains(error.type)) {
    budget->record_failure(/*retry=*/facts.attempt > 0);
  }
  if (facts.stop_requested) return {false, {}, StopReason::cancelled, nullptr};
  const RetryDecision d =
      retry_.decide(facts.attempt, error, now, facts.deadline, facts.previous, random.next_unit());
  AttemptDecision out{d.retry, d.delay, d.stop, nullptr};
  if (!out.retry) return out;
  // A fast error from one replica, and the retry goes to another: no backoff. The wait is there to
  // give the failed replica time; the next one has not failed. Not after a timeout, a 429 or
  // pushback (the agent as a whole asks for less), nor while most of the agent's calls fail.
  if (facts.other_replica && RetryBudget::cost_of(error, true) == RetryCost::other_replica &&
      (budget == nullptr || !budget->overloaded(now))) {
    out.delay = Duration::zero();
  }
  if (breaker_ != nullptr) {
    const CircuitState circuit = breaker_->state();
    if (circuit == CircuitState::open || circuit == CircuitState::isolated) {
      // This failure opened the circuit: the retry would only be refused after its wait.
      return {false, {}, StopReason::circuit_open, nullptr};
    }
  }
  // A local refusal's retry (the rate limiter's wait) adds nothing to the agent's load: it is not
  // the budget's to pay for.
  if (budget != nullptr && error.stop == StopReason::none) {
    if (!budget->try_acquire_retry(RetryBudget::cost_of(error, facts.other_replica), now))
      return {false, {}, StopReason::retry_budget_exhausted, nullptr};
    out.token = budget;
  }
  return out;
}

}  // namespace mend
