// File: mend/core/rate_limiter.h
//
// A token-bucket rate limiter: on average `rate_per_second` calls, with bursts of up to `burst`.
// It is implemented as the generic cell rate algorithm (one atomic "theoretical arrival time"),
// which is exactly a token bucket and needs no lock and no refill timer. A refused call learns
// when a token will be there: the executor turns that into a retry_after.
//
//   mend::RateLimiter limiter("openai", {.rate_per_second = 50, .burst = 10});
//   auto d = limiter.try_acquire(clock.now());
//   if (!d.allowed) wait_or_fail(d.retry_after);
//
// Thread-safety: try_acquire is lock-free and safe from many threads.
#ifndef MEND_CORE_RATE_LIMITER_H_
#define MEND_CORE_RATE_LIMITER_H_

#include <atomic>
#include <cstdint>
#include <string>

#include "mend/core/clock.h"
#include "mend/core/error.h"

namespace mend {

struct RateLimiterOptions {
  double rate_per_second = 100;
  double burst = 100;  // calls allowed at once after an idle period (at least 1)
};

class RateLimiter {
 public:
  struct Decision {
    bool allowed = false;
    Duration retry_after{};  // when refused: how long until `permits` would be allowed
  };

  // Throws std::invalid_argument unless rate > 0 and burst >= 1.
  RateLimiter(std::string name, RateLimiterOptions options);

  Decision try_acquire(TimePoint now, double permits = 1) noexcept;

  // The error value for a refusal: rate_limit_exceeded/low, stop rate_limited, retry_after.
  Error rejection(const Decision& decision) const;

  const std::string& name() const noexcept { return name_; }
  const RateLimiterOptions& options() const noexcept { return options_; }

 private:
  const std::string name_;
  const RateLimiterOptions options_;
  const double interval_ns_;   // time one token takes to come back
  const double tolerance_ns_;  // burst * interval
  std::atomic<std::int64_t> theoretical_arrival_ns_;
};

}  // namespace mend

#endif  // MEND_CORE_RATE_LIMITER_H_
