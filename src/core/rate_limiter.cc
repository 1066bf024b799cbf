#include "mend/core/rate_limiter.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace mend {

RateLimiter::RateLimiter(std::string name, RateLimiterOptions options)
    : name_(std::move(name)),
      options_(options),
      interval_ns_(options.rate_per_second > 0 ? 1e9 / options.rate_per_second : 0),
      tolerance_ns_(options.burst * interval_ns_),
      theoretical_arrival_ns_(std::numeric_limits<std::int64_t>::min()) {
  if (!(options.rate_per_second > 0 && std::isfinite(options.rate_per_second))) {
    throw std::invalid_argument("rate limiter: rate_per_second must be positive");
  }
  if (!(options.burst >= 1 && std::isfinite(options.burst))) {
    throw std::invalid_argument("rate limiter: burst must be at least 1");
  }
  // The bucket's depth in time must fit the nanosecond arithmetic with room to spare.
  if (!(tolerance_ns_ < 1e18)) {
    throw std::invalid_argument("rate limiter: burst / rate_per_second must be under 30 years");
  }
}

RateLimiter::Decision RateLimiter::try_acquire(TimePoint now, double permits) noexcept {
  const std::int64_t t = now.time_since_epoch().count();
  // More permits than the burst are never granted; clamping keeps the arithmetic in range.
  const double wanted = std::clamp(std::isfinite(permits) ? permits : 0.0, 0.0, options_.burst + 1);
  const auto cost = static_cast<std::int64_t>(std::llround(wanted * interval_ns_));
  const auto tolerance = static_cast<std::int64_t>(std::llround(tolerance_ns_));
  std::int64_t tat = theoretical_arrival_ns_.load(std::memory_order_relaxed);
  while (true) {
    // GCRA: the bucket is as full as the theoretical arrival time is close to now.
    const std::int64_t new_tat = std::max(tat, t) + cost;
    const std::int64_t ahead = new_tat - t;
    if (ahead > tolerance) return {false, Duration(ahead - tolerance)};
    if (theoretical_arrival_ns_.compare_exchange_weak(tat, new_tat, std::memory_order_relaxed)) {
      return {true, {}};
    }
  }
}

Error RateLimiter::rejection(const Decision& decision) const {
  Error e = Error::classified_as(ErrorType::rate_limit_exceeded, Severity::low,
                                 "rate limiter '" + name_ + "' refused the call");
  e.kind = "rate_limited";
  e.stop = StopReason::rate_limited;
  e.retry_after = decision.retry_after;
  return e;
}

}  // namespace mend
