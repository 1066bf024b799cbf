// File: mend/core/retry.h
//
// The retry policy of the user's specification: which errors are retried, how many times, and
// how long to wait in between. `RetryPolicy::decide` is pure: handed the failed attempt, the
// error, the time and a random draw, it answers "retry after 1.37 s" or "stop, and why". The
// executor (mend/core/pipeline.h) drives it; tests drive it directly on a manual clock.
//
//   mend::RetryOptions options;        // defaults: 3 retries, base 1 s, cap 60 s
//   options.max_retries = 5;
//   mend::RetryPolicy policy(options);
//   mend::RetryDecision d = policy.decide(0, error, clock.now(), std::nullopt, {}, 0.5);
//   if (d.retry) sleeper.sleep_for(d.delay, stop);
//
// Rules, in order: an error whose type is not retryable stops at once (non_retryable); after
// max_retries retries it stops (retries_exhausted); the delay is the backoff (mend/core/backoff.h),
// replaced by the error's retry_after when it has one (bounded by the cap); when the next attempt
// could not start before the deadline it stops (deadline_exceeded). A retry budget, when set,
// is asked last, by the executor (retry_budget_exhausted).
//
// Thread-safety: RetryPolicy is immutable after construction and safe to share.
#ifndef MEND_CORE_RETRY_H_
#define MEND_CORE_RETRY_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "mend/core/backoff.h"
#include "mend/core/error.h"
#include "mend/core/retry_budget.h"

namespace mend {

// The specification's retryable types: network_timeout, connection_reset, rate_limit_exceeded,
// temporary_unavailable, connection_pool_exhausted.
using RetryableSet = ErrorTypeSet;
inline ErrorTypeSet default_retryable_types() {
  return {ErrorType::network_timeout, ErrorType::connection_reset, ErrorType::rate_limit_exceeded,
          ErrorType::temporary_unavailable, ErrorType::connection_pool_exhausted};
}

struct RetryOptions {
  std::string name = "retry";  // names this policy in events
  int max_retries = 3;         // the specification's 3 (so at most 4 attempts)
  BackoffOptions backoff;      // base 1 s, cap 60 s, error_scaled
  ErrorTypeSet retryable = default_retryable_types();
  bool honor_retry_after = true;  // the error's retry_after replaces the computed delay
  // A retry_after is waited in full, then up to this share of it more, drawn at random: every
  // client an agent asked to pause would otherwise come back at the same instant (a herd). The
  // spread is only ever added, never taken off: no retry comes before the agent asked. In [0, 1].
  double retry_after_jitter = 0.2;
  std::shared_ptr<RetryBudget> budget;  // none by default; share one per backend
};

struct RetryDecision {
  bool retry = false;
  StopReason stop = StopReason::none;  // why not, when retry is false
  Duration delay{};                    // the wait before the next attempt, when retry is true
};

class RetryPolicy {
 public:
  // Throws std::invalid_argument for negative max_retries or base/cap, or a multiplier < 1.
  explicit RetryPolicy(RetryOptions options = {});

  // `attempt` is the index of the attempt that just failed (0 = the first call); `previous` the
  // delay before it (zero for the first). `u` is a uniform draw in [0, 1).
  RetryDecision decide(int attempt, const Error& error, TimePoint now,
                       std::optional<TimePoint> deadline, Duration previous, double u) const;

  const RetryOptions& options() const noexcept { return options_; }

 private:
  RetryOptions options_;
};

}  // namespace mend

#endif  // MEND_CORE_RETRY_H_
