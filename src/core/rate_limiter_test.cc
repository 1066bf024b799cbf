#include "mend/core/rate_limiter.h"

#include <gtest/gtest.h>

#include <stdexcept>

#include "mend/core/pipeline.h"
#include "test_env.h"

namespace mend {
namespace {

using namespace mend::testing;

TEST(RateLimiter, AllowsABurstThenOnePerInterval) {
  ManualClock clock;
  RateLimiter limiter("api", {.rate_per_second = 2, .burst = 3});
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.try_acquire(clock.now()).allowed) << i;
  auto refused = limiter.try_acquire(clock.now());
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.retry_after, milliseconds(500));
  clock.advance(milliseconds(200));
  EXPECT_EQ(limiter.try_acquire(clock.now()).retry_after, milliseconds(300));
  clock.advance(milliseconds(300));
  EXPECT_TRUE(limiter.try_acquire(clock.now()).allowed);
  EXPECT_FALSE(limiter.try_acquire(clock.now()).allowed);
}

TEST(RateLimiter, AnIdlePeriodRefillsUpToTheBurstAndNoMore) {
  ManualClock clock;
  RateLimiter limiter("api", {.rate_per_second = 10, .burst = 5});
  clock.advance(std::chrono::hours(1));
  int allowed = 0;
  while (limiter.try_acquire(clock.now()).allowed) ++allowed;
  EXPECT_EQ(allowed, 5);
}

TEST(RateLimiter, SustainsItsRate) {
  ManualClock clock;
  RateLimiter limiter("api", {.rate_per_second = 100, .burst = 1});
  int allowed = 0;
  for (int i = 0; i < 10000; ++i) {  // 10 s in 1 ms steps
    allowed += limiter.try_acquire(clock.now()).allowed;
    clock.advance(milliseconds(1));
  }
  EXPECT_EQ(allowed, 1000);
}

TEST(RateLimiter, MorePermitsThanTheBurstAreNeverAllowed) {
  ManualClock clock;
  RateLimiter limiter("api", {.rate_per_second = 1, .burst = 2});
  auto d = limiter.try_acquire(clock.now(), 3);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after, seconds(1));
  EXPECT_TRUE(limiter.try_acquire(clock.now(), 2).allowed);
}

TEST(RateLimiter, RejectsInvalidOptions) {
  EXPECT_THROW(RateLimiter("x", {.rate_per_second = 0, .burst = 1}), std::invalid_argument);
  EXPECT_THROW(RateLimiter("x", {.rate_per_second = 1, .burst = 0.5}), std::invalid_argument);
}

TEST(RateLimiter, RefusalIsARetryableErrorWithRetryAfter) {
  ManualClock clock;
  RateLimiter limiter("api", {.rate_per_second = 4, .burst = 1});
  (void)limiter.try_acquire(clock.now());
  Error e = limiter.rejection(limiter.try_acquire(clock.now()));
  EXPECT_EQ(e.type, ErrorType::rate_limit_exceeded);
  EXPECT_EQ(e.severity, Severity::low);
  EXPECT_EQ(e.stop, StopReason::rate_limited);
  EXPECT_EQ(e.retry_after, milliseconds(250));
}

TEST(RateLimiter, InsideARetryTheCallWaitsForItsToken) {
  TestEnv t;
  auto limiter =
      std::make_shared<RateLimiter>("api", RateLimiterOptions{.rate_per_second = 4, .burst = 1});
  Pipeline p = Pipeline::Builder().env(t.env()).retry({}).rate_limiter(limiter).build();
  EXPECT_EQ(p.execute([] { return 1; }), 1);
  // Refused once, retried after the 250 ms to its token and a tenth more (retry_after_jitter 0.2
  // at the draw 0.5): never before the token.
  EXPECT_EQ(p.execute([] { return 2; }), 2);
  EXPECT_EQ(t.sleeper.sleeps(), (std::vector<Duration>{milliseconds(275)}));
  EXPECT_EQ(t.events.count(EventKind::rate_limited), 1u);

  // Without a retry around it, the refusal reaches the caller.
  Pipeline bare = Pipeline::Builder().env(t.env()).rate_limiter(limiter).build();
  EXPECT_THROW(bare.execute([] { return 3; }), RateLimitedError);
}

}  // namespace
}  // namespace mend
