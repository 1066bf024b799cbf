#include "mend/core/retry.h"

#include <algorithm>
#include <stdexcept>

namespace mend {

RetryPolicy::RetryPolicy(RetryOptions options) : options_(std::move(options)) {
  if (options_.max_retries < 0) throw std::invalid_argument("retry: max_retries must be >= 0");
  constexpr Duration kOneYear = std::chrono::hours(24 * 365);
  if (options_.backoff.base < Duration::zero() || options_.backoff.cap < Duration::zero() ||
      options_.backoff.base > kOneYear || options_.backoff.cap > kOneYear) {
    throw std::invalid_argument("retry: backoff base and cap must be between 0 and one year");
  }
  if (!(options_.backoff.multiplier >= 1.0)) {
    throw std::invalid_argument("retry: backoff multiplier must be >= 1");
  }
  if (!(options_.backoff.jitter >= 0.0 && options_.backoff.jitter <= 1.0)) {
    throw std::invalid_argument("retry: backoff jitter must be in [0, 1]");
  }
  if (!(options_.retry_after_jitter >= 0.0 && options_.retry_after_jitter <= 1.0)) {
    throw std::invalid_argument("retry: retry_after_jitter must be in [0, 1]");
  }
}

RetryDecision RetryPolicy::decide(int attempt, const Error& error, TimePoint now,
                                  std::optional<TimePoint> deadline, Duration previous,
                                  double u) const {
  if (!options_.retryable.contains(error.type)) return {false, StopReason::non_retryable, {}};
  if (attempt >= options_.max_retries) return {false, StopReason::retries_exhausted, {}};
  Duration delay =
      compute_backoff(options_.backoff, attempt, error.type, error.severity, previous, u);
  if (options_.honor_retry_after && error.retry_after && *error.retry_after >= Duration::zero()) {
    // The draw the backoff's jitter would have used spreads the clients after the pause instead.
    const Duration asked = std::min(*error.retry_after, options_.backoff.cap);
    delay = asked + std::chrono::duration_cast<Duration>(asked * (options_.retry_after_jitter * u));
  }
  if (deadline && now + delay >= *deadline) return {false, StopReason::deadline_exceeded, {}};
  return {true, StopReason::none, delay};
}

}  // namespace mend
