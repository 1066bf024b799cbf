#include "mend/core/pipeline.h"

#include "mend/core/attempt_policy.h"

namespace mend {

Event detail::event_for(EventKind kind, const Env& env, const std::string& source,
                        const Error& error) {
  Event e;
  e.kind = kind;
  e.at = env.clock->now();
  e.source = source;
  e.error_type = error.type;
  e.severity = error.severity;
  e.stop = error.stop;
  return e;
}

RetryDecision RetryStage::decide(int attempt, Error& error, Duration previous,
                                 const CallScope& scope) const {
  const RetryOptions& o = policy_.options();
  switch (error.stop) {
    // A verdict an inner retry loop already reached is final: retrying it would multiply
    // attempts (inner x outer) and ignore the inner loop's reason.
    case StopReason::retries_exhausted:
    case StopReason::retry_budget_exhausted:
    case StopReason::deadline_exceeded:
    case StopReason::cancelled:
      return {false, error.stop, {}};
    default:
      break;
  }
  // The budget, the policy and the caller's stop, as every caller of an agent decides
  // (mend/core/attempt_policy.h); this stage has no breaker of its own (it is a stage if any).
  const AttemptDecision a =
      AttemptPolicy(nullptr, policy_)
          .decide_retry(error,
                        {.attempt = attempt,
                         .previous = previous,
                         .deadline = scope.options.deadline,
                         .stop_requested = scope.options.stop.stop_requested()},
                        scope.env.clock->now(), *scope.env.random);
  const RetryDecision d{a.retry, a.stop, a.delay};
  if (d.retry && scope.env.events != nullptr) {
    Event e = detail::event_for(EventKind::retry_scheduled, scope.env, o.name, error);
    e.attempt = attempt;
    e.delay = d.delay;
    e.detail = error.message;
    scope.env.emit(e);
  }
  return d;
}

void RetryStage::give_up(Error& error, StopReason stop, std::vector<Attempt> attempts,
                         const CallScope& scope) const {
  // A refusal by an inner policy (circuit_open, ...) that is not retryable keeps its own reason:
  // it says more than "non_retryable" and selects the right exception.
  if (!(stop == StopReason::non_retryable && error.stop != StopReason::none)) error.stop = stop;
  const int last = attempts.empty() ? 0 : attempts.back().number;
  error.attempts = std::move(attempts);
  if (scope.env.events != nullptr) {
    Event e = detail::event_for(EventKind::gave_up, scope.env, policy_.options().name, error);
    e.attempt = last;
    e.detail = error.message;
    scope.env.emit(e);
  }
}

Error CircuitBreakerStage::reject(const CircuitBreaker::Permit& permit,
                                  const CallScope& scope) const {
  Error error = breaker_->rejection(permit);
  if (scope.env.events != nullptr) {
    Event e = detail::event_for(EventKind::circuit_rejected, scope.env, breaker_->name(), error);
    e.delay = permit.retry_after();
    e.from = e.to = permit.state();
    scope.env.emit(e);
  }
  return error;
}

void CircuitBreakerStage::record_failure(const CircuitBreaker::Permit& permit, const Error& error,
                                         const Clock& clock) const {
  AttemptPolicy::record_failure(*breaker_, permit, error, clock);
}

Error BulkheadStage::reject(Bulkhead::Admission admission, const CallScope& scope) const {
  Error error = bulkhead_->rejection(admission);
  if (scope.env.events != nullptr) {
    scope.env.emit(
        detail::event_for(EventKind::bulkhead_rejected, scope.env, bulkhead_->name(), error));
  }
  return error;
}

Error RateLimiterStage::reject(const RateLimiter::Decision& decision,
                               const CallScope& scope) const {
  Error error = limiter_->rejection(decision);
  if (scope.env.events != nullptr) {
    Event e = detail::event_for(EventKind::rate_limited, scope.env, limiter_->name(), error);
    e.delay = decision.retry_after;
    scope.env.emit(e);
  }
  return error;
}

Pipeline::Pipeline(Env env, std::vector<Stage> stages) : env_(env), stages_(std::move(stages)) {
  // The flattened path serves pipelines of retries (up to kMaxFastBudgets budgets) and at most
  // one breaker: the common shape (see run_call). Anything else runs the general path.
  bool flat = true;
  std::size_t breakers = 0;
  for (const Stage& stage : stages_) {
    if (const auto* retry = std::get_if<RetryStage>(&stage)) {
      if (RetryBudget* budget = retry->policy().options().budget.get()) {
        if (fast_budget_count_ == kMaxFastBudgets) {
          flat = false;
        } else {
          fast_budgets_[fast_budget_count_++] = budget;
        }
      }
    } else if (const auto* guard = std::get_if<CircuitBreakerStage>(&stage)) {
      fast_breaker_ = guard->breaker().get();
      ++breakers;
    } else {
      flat = false;  // bulkheads and rate limiters act on every call
    }
  }
  if (!flat || breakers > 1) return;
  if (breakers == 0) {
    fast_shape_ = FastShape::no_breaker;
  } else {
    fast_shape_ = fast_breaker_->options().mode == BreakerMode::consecutive
                      ? FastShape::one_consecutive_breaker
                      : FastShape::one_breaker;
  }
}

std::optional<Error> Pipeline::refuse_before_start(const CallScope& scope) const {
  if (scope.options.stop.stop_requested()) {
    Error e = Error::classified_as(ErrorType::processing_failed, Severity::low,
                                   "cancelled before the first attempt");
    e.stop = StopReason::cancelled;
    return e;
  }
  if (scope.options.deadline && scope.env.clock->now() >= *scope.options.deadline) {
    Error e = Error::classified_as(ErrorType::network_timeout, Severity::medium,
                                   "deadline passed before the first attempt");
    e.stop = StopReason::deadline_exceeded;
    return e;
  }
  return std::nullopt;
}

}  // namespace mend
