#include "mend/core/backoff.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "mend/core/random.h"

namespace mend {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using T = ErrorType;
using S = Severity;

Duration scaled_delay(int attempt, ErrorType type, Severity severity, double u) {
  return compute_backoff(BackoffOptions{}, attempt, type, severity, Duration{}, u);
}

TEST(ErrorScaledBackoff, DefaultsAreTheSpecifications) {
  BackoffOptions o;
  EXPECT_EQ(o.kind, BackoffKind::error_scaled);
  EXPECT_EQ(o.base, seconds(1));
  EXPECT_EQ(o.cap, seconds(60));
  EXPECT_DOUBLE_EQ(o.jitter, 0.25);
}

TEST(ErrorScaledBackoff, DoublesPerAttemptWithoutJitterAtTheMiddleDraw) {
  // u = 0.5 makes the jitter term 0.
  EXPECT_EQ(scaled_delay(0, T::temporary_unavailable, S::medium, 0.5), seconds(1));
  EXPECT_EQ(scaled_delay(1, T::temporary_unavailable, S::medium, 0.5), seconds(2));
  EXPECT_EQ(scaled_delay(2, T::temporary_unavailable, S::medium, 0.5), seconds(4));
  EXPECT_EQ(scaled_delay(5, T::temporary_unavailable, S::medium, 0.5), seconds(32));
}

TEST(ErrorScaledBackoff, AppliesTypeAndSeverityFactors) {
  EXPECT_EQ(scaled_delay(0, T::rate_limit_exceeded, S::low, 0.5), seconds(2));
  EXPECT_EQ(scaled_delay(0, T::network_timeout, S::medium, 0.5), milliseconds(1500));
  EXPECT_EQ(scaled_delay(0, T::connection_reset, S::high, 0.5), milliseconds(1500));
  EXPECT_EQ(scaled_delay(0, T::connection_reset, S::critical, 0.5), seconds(2));
  // Factors multiply: 2^1 x 2 (rate limit) x 2 (critical) = 8 s.
  EXPECT_EQ(scaled_delay(1, T::rate_limit_exceeded, S::critical, 0.5), seconds(8));
  // Timeout and high: 2^2 x 1.5 x 1.5 = 9 s.
  EXPECT_EQ(scaled_delay(2, T::network_timeout, S::high, 0.5), seconds(9));
}

TEST(ErrorScaledBackoff, JitterIsPlusMinusAQuarter) {
  EXPECT_EQ(scaled_delay(2, T::connection_reset, S::medium, 0.0), seconds(3));  // 4 x 0.75
  EXPECT_EQ(scaled_delay(2, T::connection_reset, S::medium, 0.75), seconds(4) + milliseconds(500));
  EXPECT_EQ(scaled_delay(2, T::connection_reset, S::medium, 1.0), seconds(5));  // 4 x 1.25
}

TEST(ErrorScaledBackoff, CapsAfterJitterAsTheSpecificationDoes) {
  // 2^6 = 64 s, x0.75 = 48 s: under the cap, so the jitter shows. (Capping first would give 45.)
  EXPECT_EQ(scaled_delay(6, T::connection_reset, S::medium, 0.0), seconds(48));
  EXPECT_EQ(scaled_delay(6, T::connection_reset, S::medium, 0.5), seconds(60));
  EXPECT_EQ(scaled_delay(30, T::rate_limit_exceeded, S::critical, 1.0), seconds(60));
  // Absurd attempt numbers neither overflow nor go negative.
  EXPECT_EQ(scaled_delay(100000, T::connection_reset, S::medium, 0.3), seconds(60));
  EXPECT_EQ(scaled_delay(-5, T::connection_reset, S::medium, 0.5), seconds(1));
}

TEST(OtherBackoffs, FollowTheirFormulas) {
  BackoffOptions o;
  o.base = milliseconds(100);
  o.cap = seconds(10);
  auto at = [&](BackoffKind kind, int attempt, double u, Duration prev = {}) {
    o.kind = kind;
    return compute_backoff(o, attempt, T::network_timeout, S::critical, prev, u);
  };
  // No error factors outside the error_scaled kind, whatever the type and severity.
  EXPECT_EQ(at(BackoffKind::constant, 7, 0.9), milliseconds(100));
  EXPECT_EQ(at(BackoffKind::linear, 0, 0.9), milliseconds(100));
  EXPECT_EQ(at(BackoffKind::linear, 4, 0.9), milliseconds(500));
  EXPECT_EQ(at(BackoffKind::exponential, 3, 0.9), milliseconds(800));
  EXPECT_EQ(at(BackoffKind::exponential, 20, 0.9), seconds(10));
  EXPECT_EQ(at(BackoffKind::full_jitter, 3, 0.0), Duration::zero());
  EXPECT_EQ(at(BackoffKind::full_jitter, 3, 0.5), milliseconds(400));
  EXPECT_EQ(at(BackoffKind::full_jitter, 20, 0.5), seconds(5));
  EXPECT_EQ(at(BackoffKind::equal_jitter, 3, 0.0), milliseconds(400));
  EXPECT_EQ(at(BackoffKind::equal_jitter, 3, 0.5), milliseconds(600));
  // Decorrelated: U(base, 3 x previous), previous = base before the first retry.
  EXPECT_EQ(at(BackoffKind::decorrelated_jitter, 0, 0.5), milliseconds(200));
  EXPECT_EQ(at(BackoffKind::decorrelated_jitter, 1, 0.5, milliseconds(200)), milliseconds(350));
  EXPECT_EQ(at(BackoffKind::decorrelated_jitter, 9, 1.0, seconds(8)), seconds(10));
}

TEST(BackoffProperty, EveryDelayIsWithinItsBoundsOverManySeeds) {
  SeededRandom random(20261128);
  for (int kind = 0; kind <= static_cast<int>(BackoffKind::decorrelated_jitter); ++kind) {
    BackoffOptions o;
    o.kind = static_cast<BackoffKind>(kind);
    o.base = milliseconds(50 + static_cast<int>(random.next_unit() * 1000));
    o.cap = seconds(1 + static_cast<int>(random.next_unit() * 100));
    Duration previous{};
    for (int i = 0; i < 5000; ++i) {
      const int attempt = static_cast<int>(random.next_unit() * 12);
      const auto type = static_cast<ErrorType>(static_cast<int>(random.next_unit() * 20));
      const auto severity = static_cast<Severity>(static_cast<int>(random.next_unit() * 4));
      const double u = random.next_unit();
      const Duration d = compute_backoff(o, attempt, type, severity, previous, u);
      const DelayBounds b = backoff_bounds(o, attempt, type, severity, previous);
      // Bounds worked out independently of the implementation, from each formula.
      const double base = to_seconds(o.base), cap = to_seconds(o.cap);
      const double e = std::min(cap, base * std::pow(2.0, attempt));
      double lo = 0, hi = cap;
      switch (o.kind) {
        case BackoffKind::constant:
          lo = hi = std::min(base, cap);
          break;
        case BackoffKind::linear:
          lo = hi = std::min(cap, base * (attempt + 1));
          break;
        case BackoffKind::exponential:
          lo = hi = e;
          break;
        case BackoffKind::full_jitter:
          lo = 0, hi = e;
          break;
        case BackoffKind::equal_jitter:
          lo = e / 2, hi = e;
          break;
        case BackoffKind::decorrelated_jitter: {
          const double prev = previous > Duration::zero() ? to_seconds(previous) : base;
          lo = std::min(cap, base), hi = std::min(cap, std::max(base, 3 * prev));
          break;
        }
        case BackoffKind::error_scaled:
          lo = 0, hi = cap;
          break;  // checked against the midpoint below
      }
      ASSERT_GE(to_seconds(d), lo - 1e-6) << to_string(o.kind) << " attempt " << attempt;
      ASSERT_LE(to_seconds(d), hi + 1e-6) << to_string(o.kind) << " attempt " << attempt;
      ASSERT_GE(d, Duration::zero());
      ASSERT_LE(d, o.cap);
      ASSERT_GE(d, b.min) << to_string(o.kind) << " attempt " << attempt;
      ASSERT_LE(d, b.max) << to_string(o.kind) << " attempt " << attempt;
      if (o.kind == BackoffKind::error_scaled) {
        // Within +-25 % of the unjittered delay, unless the cap cut it.
        const Duration mid = compute_backoff(o, attempt, type, severity, previous, 0.5);
        if (mid < o.cap) {
          ASSERT_GE(to_seconds(d), to_seconds(mid) * 0.75 - 1e-9);
          ASSERT_LE(to_seconds(d), to_seconds(mid) * 1.25 + 1e-9);
        }
      }
      previous = d;
    }
  }
}

TEST(BackoffKinds, NamesRoundTrip) {
  for (int k = 0; k <= static_cast<int>(BackoffKind::decorrelated_jitter); ++k) {
    auto kind = static_cast<BackoffKind>(k);
    EXPECT_EQ(parse_backoff_kind(to_string(kind)), kind);
  }
  EXPECT_EQ(to_string(BackoffKind::error_scaled), "error_scaled");
  EXPECT_FALSE(parse_backoff_kind("fibonacci").has_value());
}

}  // namespace
}  // namespace mend
