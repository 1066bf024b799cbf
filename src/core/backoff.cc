#include "mend/core/backoff.h"

#include <algorithm>
#include <array>
#include <cmath>

namespace mend {
namespace {

constexpr std::array<std::string_view, 7> kKindNames = {
    "error_scaled", "constant",           "linear", "exponential", "full_jitter",
    "equal_jitter", "decorrelated_jitter"};

// base * multiplier^attempt in seconds, without overflow for large attempts.
double exponential_seconds(const BackoffOptions& o, int attempt) {
  double base = to_seconds(o.base);
  double grown = base * std::pow(o.multiplier, std::clamp(attempt, 0, 1024));
  return std::isfinite(grown) ? grown : to_seconds(o.cap) * 2;
}

// The error_scaled kind's factor: by the error's type, then by its severity.
double error_factor(const BackoffOptions& o, ErrorType type, Severity severity) {
  double f = 1.0;
  if (type == ErrorType::rate_limit_exceeded) {
    f *= o.rate_limit_factor;
  } else if (type == ErrorType::network_timeout) {
    f *= o.timeout_factor;
  }
  if (severity == Severity::high) {
    f *= o.high_factor;
  } else if (severity == Severity::critical) {
    f *= o.critical_factor;
  }
  return f;
}

// Delay in seconds as a function of u, before clamping to [0, cap].
double raw_seconds(const BackoffOptions& o, int attempt, ErrorType type, Severity severity,
                   Duration previous, double u) {
  const double cap = to_seconds(o.cap);
  const double base = to_seconds(o.base);
  switch (o.kind) {
    case BackoffKind::error_scaled: {
      double delay = exponential_seconds(o, attempt) * error_factor(o, type, severity);
      return delay + delay * o.jitter * (2 * u - 1);
    }
    case BackoffKind::constant:
      return base;
    case BackoffKind::linear:
      return base * (std::max(attempt, 0) + 1.0);
    case BackoffKind::exponential:
      return exponential_seconds(o, attempt);
    case BackoffKind::full_jitter:
      return u * std::min(cap, exponential_seconds(o, attempt));
    case BackoffKind::equal_jitter: {
      double e = std::min(cap, exponential_seconds(o, attempt));
      return e / 2 + u * (e / 2);
    }
    case BackoffKind::decorrelated_jitter: {
      double prev = previous > Duration::zero() ? to_seconds(previous) : base;
      double hi = std::max(base, prev * 3);
      return base + u * (hi - base);
    }
  }
  return base;
}

}  // namespace

std::string_view to_string(BackoffKind kind) noexcept {
  auto i = static_cast<std::size_t>(kind);
  return i < kKindNames.size() ? kKindNames[i] : "unknown";
}

std::optional<BackoffKind> parse_backoff_kind(std::string_view name) noexcept {
  for (std::size_t i = 0; i < kKindNames.size(); ++i) {
    if (kKindNames[i] == name) return static_cast<BackoffKind>(i);
  }
  return std::nullopt;
}

Duration compute_backoff(const BackoffOptions& options, int attempt, ErrorType type,
                         Severity severity, Duration previous, double u) noexcept {
  u = std::clamp(u, 0.0, 1.0);
  double seconds = raw_seconds(options, attempt, type, severity, previous, u);
  seconds = std::clamp(seconds, 0.0, std::max(0.0, to_seconds(options.cap)));
  return std::min(from_seconds(seconds), std::max(options.cap, Duration::zero()));
}

DelayBounds backoff_bounds(const BackoffOptions& options, int attempt, ErrorType type,
                           Severity severity, Duration previous) noexcept {
  // Every formula is monotonic non-decreasing in u, so the ends of [0, 1] bound it.
  return {compute_backoff(options, attempt, type, severity, previous, 0.0),
          compute_backoff(options, attempt, type, severity, previous, 1.0)};
}

}  // namespace mend
