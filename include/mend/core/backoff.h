// File: mend/core/backoff.h
//
// How long to wait before retry number `attempt + 1`. A pure function of its inputs: the random
// draw `u` in [0, 1) is passed in, so a test that fixes it gets an exact delay.
//
// The default, BackoffKind::error_scaled, is the user's specification's: exponential, scaled by
// the error's type and severity:
//   delay = base * 2^attempt
//           x 2   for rate_limit_exceeded     x 1.5 for network_timeout
//           x 1.5 for high severity           x 2   for critical severity
//   delay += delay * 0.25 * (2u - 1)          (jitter +-25 %)
//   delay  = min(delay, cap)                  (base 1 s, cap 60 s)
// The others are the usual formulas, after AWS's "Exponential Backoff and Jitter", with
// e = min(cap, base * multiplier^attempt):
//   constant             base
//   linear               min(cap, base * (attempt + 1))
//   exponential          e
//   full_jitter          U(0, e)
//   equal_jitter         e/2 + U(0, e/2)
//   decorrelated_jitter  min(cap, U(base, 3 * previous)), previous = base before the first retry
// Only `error_scaled` applies the error-type and severity factors.
//
// Thread-safety: pure functions; BackoffOptions is a value.
#ifndef MEND_CORE_BACKOFF_H_
#define MEND_CORE_BACKOFF_H_

#include <chrono>
#include <optional>
#include <string_view>

#include "mend/core/clock.h"
#include "mend/core/error.h"

namespace mend {

enum class BackoffKind : std::uint8_t {
  error_scaled,  // configuration files may still say `seed`, its former name
  constant,
  linear,
  exponential,
  full_jitter,
  equal_jitter,
  decorrelated_jitter,
};
std::string_view to_string(BackoffKind kind) noexcept;
std::optional<BackoffKind> parse_backoff_kind(std::string_view name) noexcept;

struct BackoffOptions {
  BackoffKind kind = BackoffKind::error_scaled;
  Duration base = std::chrono::seconds(1);  // specification: 1.0 s
  Duration cap = std::chrono::seconds(60);  // specification: 60 s
  double multiplier = 2.0;                  // growth per attempt
  double jitter = 0.25;                     // error_scaled kind: +-25 %
  double rate_limit_factor = 2.0;           // error_scaled kind: rate_limit_exceeded
  double timeout_factor = 1.5;              // error_scaled kind: network_timeout
  double high_factor = 1.5;                 // error_scaled kind: high severity
  double critical_factor = 2.0;             // error_scaled kind: critical severity
};

// The delay after failed attempt `attempt` (0 = the first call). `previous` is the delay used
// before it (decorrelated jitter grows from it; zero before the first retry). Never negative,
// never above options.cap.
Duration compute_backoff(const BackoffOptions& options, int attempt, ErrorType type,
                         Severity severity, Duration previous, double u) noexcept;

// The range compute_backoff() can return for these inputs, over all u: for property tests and
// for documentation.
struct DelayBounds {
  Duration min;
  Duration max;
};
DelayBounds backoff_bounds(const BackoffOptions& options, int attempt, ErrorType type,
                           Severity severity, Duration previous) noexcept;

}  // namespace mend

#endif  // MEND_CORE_BACKOFF_H_
