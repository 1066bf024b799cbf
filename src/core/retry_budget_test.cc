// The retry budget on a manual clock and a seeded random source: costs by the kind of failure,
// the window and its floor, the failure share that makes every retry an overload's, the in-flight
// floor, and the figures it exports (actual and effective success).
#include "mend/core/retry_budget.h"

#include <gtest/gtest.h>

#include <stdexcept>

#include "mend/core/pipeline.h"
#include "test_env.h"

namespace mend {
namespace {

using namespace mend::testing;

Error with_status(ErrorType type, int status) {
  Error e = Error::classified_as(type, Severity::medium, "x");
  e.status = status;
  return e;
}

TEST(RetryBudget, ChargesByTheKindOfFailure) {
  const Error plain_503 = with_status(ErrorType::temporary_unavailable, 503);
  EXPECT_EQ(RetryBudget::cost_of(plain_503, /*other_replica=*/true), RetryCost::other_replica);
  EXPECT_EQ(RetryBudget::cost_of(plain_503, false), RetryCost::plain);
  // Timeouts, 429s and pushback (Retry-After) are an overload's, wherever the retry would go.
  Error pushback = plain_503;
  pushback.retry_after = std::chrono::seconds(2);
  EXPECT_EQ(RetryBudget::cost_of(pushback, true), RetryCost::overload);
  EXPECT_EQ(RetryBudget::cost_of(with_status(ErrorType::rate_limit_exceeded, 429), true),
            RetryCost::overload);
  EXPECT_EQ(RetryBudget::cost_of(
                Error::classified_as(ErrorType::network_timeout, Severity::medium, "slow"), true),
            RetryCost::overload);
  EXPECT_EQ(RetryBudget::cost_of(with_status(ErrorType::network_timeout, 504), false),
            RetryCost::overload);
}

// Without the floor, the window's allowance is ratio x requests: 100 answered requests allow 50
// in cost, that is 100 retries to another replica, 50 plain ones or 10 after an overload.
TEST(RetryBudget, TheAllowanceIsAShareOfRequestsSpentAtEachKindsPrice) {
  ManualClock clock;
  for (auto [cost, expected] :
       {std::pair{RetryCost::other_replica, 100}, std::pair{RetryCost::plain, 50},
        std::pair{RetryCost::overload, 10}}) {
    RetryBudget b({.min_retries_per_second = 0});
    for (int i = 0; i < 100; ++i) b.record_success();
    int granted = 0;
    while (b.try_acquire_retry(cost, clock.now()) && granted < 1000) {
      b.record_success(/*retry=*/true);  // the retry's call: a call, not a request
      b.release_retry();
      ++granted;
    }
    EXPECT_EQ(granted, expected) << static_cast<int>(cost);
    const RetryBudget::Reading r = b.reading(clock.now());
    EXPECT_EQ(r.retries, static_cast<std::uint64_t>(expected));
    EXPECT_DOUBLE_EQ(r.allowance, 50);
  }
}

TEST(RetryBudget, AMajorityOfFailuresMakesEveryRetryAnOverloads) {
  ManualClock clock;
  RetryBudget b({.min_retries_per_second = 0});
  for (int i = 0; i < 40; ++i) b.record_success();
  for (int i = 0; i < 60; ++i) b.record_failure();
  // 60 % of the window's calls failed: a retry to another replica costs 5, not 0.5.
  int granted = 0;
  while (b.try_acquire_retry(RetryCost::other_replica, clock.now()) && granted < 1000) {
    b.record_success(/*retry=*/true);  // its call answered: 60 failed of 110, still a majority
    b.release_retry();
    ++granted;
  }
  EXPECT_EQ(granted, 10);  // 0.5 x 100 requests / 5
  EXPECT_DOUBLE_EQ(b.reading(clock.now()).spent, 50);
}

TEST(RetryBudget, TheFloorKeepsRetriesForLowTraffic) {
  ManualClock clock;
  RetryBudget b;  // 10 a second over 10 s: 100 in cost, with no request at all
  int granted = 0;
  while (b.try_acquire_retry(RetryCost::plain, clock.now()) && granted < 1000) {
    b.release_retry();
    ++granted;
  }
  EXPECT_EQ(granted, 100);
}

TEST(RetryBudget, SpendingLeavesTheWindowWithItsBucket) {
  ManualClock clock;
  RetryBudget b({.min_retries_per_second = 1});  // 10 in cost per window
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(b.try_acquire_retry(RetryCost::plain, clock.now()));
  EXPECT_FALSE(b.try_acquire_retry(RetryCost::plain, clock.now()));
  EXPECT_EQ(b.retries_in_flight(), 10);
  for (int i = 0; i < 10; ++i) b.release_retry();
  clock.advance(std::chrono::seconds(9));
  EXPECT_FALSE(b.try_acquire_retry(RetryCost::plain, clock.now()));  // still in the window
  clock.advance(std::chrono::seconds(1));
  EXPECT_TRUE(b.try_acquire_retry(RetryCost::plain, clock.now()));  // its bucket has left it
  b.release_retry();
  // Calls leave the window too: a minute later nothing is counted.
  for (int i = 0; i < 50; ++i) b.record_failure();
  EXPECT_EQ(b.reading(clock.now()).failures, 50u);
  clock.advance(std::chrono::minutes(1));
  EXPECT_EQ(b.reading(clock.now()).calls, 0u);
}

TEST(RetryBudget, TheInFlightFloorAdmitsThatManyWhateverTheWindowSays) {
  ManualClock clock;
  RetryBudget b({.ratio = 0, .min_retries_per_second = 0, .min_retries_in_flight = 2});
  EXPECT_TRUE(b.try_acquire_retry(RetryCost::plain, clock.now()));
  EXPECT_TRUE(b.try_acquire_retry(RetryCost::plain, clock.now()));
  EXPECT_FALSE(b.try_acquire_retry(RetryCost::plain, clock.now()));
  b.release_retry();
  EXPECT_TRUE(b.try_acquire_retry(RetryCost::plain, clock.now()));
}

TEST(RetryBudget, ReadsActualAndEffectiveSuccess) {
  ManualClock clock;
  RetryBudget b;
  EXPECT_DOUBLE_EQ(b.reading(clock.now()).actual_success(), 1.0);
  // 10 requests: 7 answered at once, 3 failed and answered on their retry.
  for (int i = 0; i < 7; ++i) b.record_success();
  for (int i = 0; i < 3; ++i) {
    b.record_failure();
    ASSERT_TRUE(b.try_acquire_retry(RetryCost::plain, clock.now()));
    b.record_success(/*retry=*/true);
    b.release_retry();
  }
  const RetryBudget::Reading r = b.reading(clock.now());
  EXPECT_EQ(r.calls, 13u);
  EXPECT_EQ(r.retry_calls, 3u);
  EXPECT_EQ(r.requests(), 10u);
  EXPECT_DOUBLE_EQ(r.actual_success(), 10.0 / 13);
  EXPECT_DOUBLE_EQ(r.effective_success(), 1.0);
}

// Retries waiting out a long backoff (a task's 1 s to 60 s) have been allowed but not made: they
// do not make the window's requests fewer, so the allowance does not shrink while they wait.
TEST(RetryBudget, RetriesWaitingInTheirBackoffDoNotShrinkTheAllowance) {
  ManualClock clock;
  RetryBudget b({.ratio = 1,
                 .min_retries_per_second = 0,
                 .overload_failure_share = 1,
                 .overload_minimum_calls = 1000});
  int granted = 0;
  for (int i = 0; i < 100; ++i) {
    b.record_failure();  // a first call fails; its retry waits
    granted += b.try_acquire_retry(RetryCost::plain, clock.now());
  }
  EXPECT_EQ(granted, 100);  // one plain retry per request, at ratio 1
  EXPECT_EQ(b.reading(clock.now()).requests(), 100u);
}

TEST(RetryBudget, RejectsOptionsOutOfRange) {
  EXPECT_THROW(RetryBudget({.ratio = -1}), std::invalid_argument);
  EXPECT_THROW(RetryBudget({.min_retries_per_second = -1}), std::invalid_argument);
  EXPECT_THROW(RetryBudget({.window = std::chrono::milliseconds(1)}), std::invalid_argument);
  EXPECT_THROW(RetryBudget({.overload_cost = -5}), std::invalid_argument);
  EXPECT_THROW(RetryBudget({.overload_failure_share = 0}), std::invalid_argument);
  EXPECT_THROW(RetryBudget({.min_retries_in_flight = -1}), std::invalid_argument);
}

// A gray failure: 30 % of calls fail at random, one replica, 3 retries each, 200 requests a
// second. Every retry goes (0.43 in cost per request at most, under the ratio's 0.5): as many
// requests answered as a proxy retrying 3 times gets, 1 - 0.3^4 = 99.2 %.
TEST(RetryBudget, AGrayFailureIsRetriedInFull) {
  TestEnv t;
  RetryOptions retry;
  retry.max_retries = 3;
  retry.backoff.kind = BackoffKind::constant;
  retry.backoff.base = Duration::zero();
  retry.backoff.cap = Duration::zero();
  retry.budget = std::make_shared<RetryBudget>(RetryBudgetOptions{.min_retries_per_second = 0});
  Pipeline p = Pipeline::Builder().env(t.env()).retry(retry).build();
  SeededRandom chaos(7);
  int answered = 0;
  int refused = 0;
  constexpr int kRequests = 20000;
  for (int i = 0; i < kRequests; ++i) {
    t.clock.advance(std::chrono::milliseconds(5));
    Result<int> r = p.try_execute([&]() -> Result<int> {
      if (chaos.next_unit() < 0.3) return Error::http(503);
      return 1;
    });
    answered += r.ok();
    refused += !r.ok() && r.error().stop == StopReason::retry_budget_exhausted;
  }
  EXPECT_EQ(refused, 0);
  EXPECT_GE(static_cast<double>(answered) / kRequests, 0.99);
}

TEST(RetryBudget, KeepsAmplificationNearOneDuringAHardOutage) {
  TestEnv t;
  RetryOptions retry;
  // No wait between attempts: 1000 calls at one instant, a busy agent's traffic (at one call a
  // second the floor of 10 retries a second is what governs, by design).
  retry.backoff.kind = BackoffKind::constant;
  retry.backoff.base = Duration::zero();
  retry.backoff.cap = Duration::zero();
  retry.budget = std::make_shared<RetryBudget>(RetryBudgetOptions{});
  Pipeline p = Pipeline::Builder().env(t.env()).retry(retry).build();
  int attempts = 0;
  constexpr int kCalls = 1000;
  for (int i = 0; i < kCalls; ++i) {
    Result<int> r = p.try_execute([&]() -> Result<int> {
      ++attempts;
      return Error::from_code(std::make_error_code(std::errc::connection_refused));
    });
    ASSERT_FALSE(r.ok());
  }
  // Without a budget: 4000 attempts. With it, every call failing makes every retry an overload's
  // (cost 5): 0.5 x 1000 / 5 = 100 retries, and the floor's 100 / 5 = 20.
  EXPECT_LE(static_cast<double>(attempts) / kCalls, 1.2);

  // The service recovers: the window moves on and retries come back.
  t.clock.advance(std::chrono::seconds(11));
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(p.try_execute([]() -> Result<int> { return 1; }).ok());
  int calls = 0;
  Result<int> r = p.try_execute([&]() -> Result<int> {
    if (++calls == 1) return Error::http(503);
    return 2;
  });
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(calls, 2);
}

}  // namespace
}  // namespace mend
