// AttemptPolicy's decisions, once, on a manual clock and a fixed random source: the order in
// which the breaker, the retry policy, the open-circuit check and the retry budget decide after a
// failed call, and what admits a call or a retry (health, deadline, breaker, rate limiter) with
// which time limit. The workflow, the relay and the pipeline's
// stages all go through it, so their tests check the wiring and these the rules.
#include "mend/core/attempt_policy.h"

#include <gtest/gtest.h>

#include <memory>

#include "test_env.h"

namespace mend {
namespace {

using namespace mend::testing;  // CountingRandom: a test tells whether the jitter was drawn

Error failure(ErrorType type = ErrorType::temporary_unavailable) {
  return Error::classified_as(type, Severity::medium, "the agent failed");
}

class AttemptPolicyTest : public ::testing::Test {
 protected:
  AttemptPolicyTest() {
    CircuitBreakerOptions b;
    b.failure_threshold = 3;
    b.recovery_timeout = seconds(10);
    b.ignored = {ErrorType::validation_failed};
    breaker_ = std::make_unique<CircuitBreaker>("agent", b);
    RetryOptions r;
    r.max_retries = 3;
    r.backoff.kind = BackoffKind::constant;
    r.backoff.base = milliseconds(100);
    retry_ = std::make_unique<RetryPolicy>(r);
  }

  // A budget that allows `allowance` in retry cost (its floor, over its 10 s window), plus `ratio`
  // per request; a plain retry costs 1, one to another replica 0.5.
  void with_budget(double allowance, double ratio = 0) {
    RetryOptions r = retry_->options();
    r.budget = std::make_shared<RetryBudget>(
        RetryBudgetOptions{.ratio = ratio, .min_retries_per_second = allowance / 10});
    retry_ = std::make_unique<RetryPolicy>(r);
  }

  AttemptPolicy policy() const { return AttemptPolicy(breaker_.get(), *retry_); }

  ManualClock clock_;
  CountingRandom random_;
  std::unique_ptr<CircuitBreaker> breaker_;
  std::unique_ptr<RetryPolicy> retry_;
};

TEST_F(AttemptPolicyTest, ARetryableFailureIsCountedByTheBreakerAndRetriedWithBackoff) {
  AttemptPolicy p = policy();
  AttemptPolicy::Admission a = p.admit(clock_);
  ASSERT_TRUE(a.allowed());
  AttemptDecision d = p.failed(a.permit, failure(), {.attempt = 0}, clock_, random_);
  EXPECT_TRUE(d.retry);
  EXPECT_EQ(d.delay, milliseconds(100));
  EXPECT_EQ(d.token, nullptr);  // no budget
  EXPECT_EQ(breaker_->snapshot(clock_).failure_count, 1);
  EXPECT_EQ(random_.draws, 1);
}

TEST_F(AttemptPolicyTest, TheLastRetryANonRetryableTypeAndTheDeadlineEndTheAttempts) {
  AttemptPolicy p = policy();
  EXPECT_EQ(p.failed(p.admit(clock_).permit, failure(), {.attempt = 3}, clock_, random_).stop,
            StopReason::retries_exhausted);
  EXPECT_EQ(
      p.failed(p.admit(clock_).permit, failure(ErrorType::processing_failed), {}, clock_, random_)
          .stop,
      StopReason::non_retryable);
  EXPECT_EQ(p.failed(p.admit(clock_).permit, failure(),
                     {.attempt = 0, .deadline = clock_.now() + milliseconds(50)}, clock_, random_)
                .stop,
            StopReason::deadline_exceeded);
}

TEST_F(AttemptPolicyTest, IgnoredTypesAndLocalRefusalsSayNothingToTheBreakerOrTheBudget) {
  with_budget(10);
  AttemptPolicy p = policy();
  for (int i = 0; i < 5; ++i) {
    p.failed(p.admit(clock_).permit, failure(ErrorType::validation_failed), {}, clock_, random_);
    Error refused = failure();
    refused.stop = StopReason::rate_limited;
    AttemptDecision d = p.failed(p.admit(clock_).permit, refused, {}, clock_, random_);
    if (d.token != nullptr) d.token->release_retry();
  }
  EXPECT_EQ(breaker_->state(), CircuitState::closed);
  EXPECT_EQ(breaker_->snapshot(clock_).failure_count, 0);
  EXPECT_EQ(retry_->options().budget->reading(clock_.now()).failures, 0u);
}

TEST_F(AttemptPolicyTest, TheFailureThatOpensTheCircuitIsNotRetried) {
  AttemptPolicy p = policy();
  EXPECT_TRUE(p.failed(p.admit(clock_).permit, failure(), {}, clock_, random_).retry);
  EXPECT_TRUE(p.failed(p.admit(clock_).permit, failure(), {}, clock_, random_).retry);
  AttemptDecision third = p.failed(p.admit(clock_).permit, failure(), {}, clock_, random_);
  EXPECT_FALSE(third.retry);
  EXPECT_EQ(third.stop, StopReason::circuit_open);
  EXPECT_EQ(breaker_->state(), CircuitState::open);
  AttemptPolicy::Admission refused = p.admit(clock_);
  EXPECT_FALSE(refused.allowed());
  EXPECT_EQ(refused.refusal, StopReason::circuit_open);
  clock_.advance(seconds(10));
  EXPECT_TRUE(p.admit(clock_).allowed());  // half-open: a probe goes through
}

TEST_F(AttemptPolicyTest, ARetryTakesABudgetTokenUntilItIsGivenBackAndAnEmptyBudgetRefuses) {
  with_budget(1);  // one plain retry
  AttemptPolicy p = policy();
  AttemptDecision first = p.failed(p.admit(clock_).permit, failure(), {}, clock_, random_);
  ASSERT_TRUE(first.retry);
  ASSERT_NE(first.token, nullptr);
  first.token->release_retry();
  AttemptDecision second = p.failed(p.admit(clock_).permit, failure(), {}, clock_, random_);
  EXPECT_FALSE(second.retry);  // the first spent the allowance
  EXPECT_EQ(second.stop, StopReason::retry_budget_exhausted);
  EXPECT_EQ(second.token, nullptr);
}

TEST_F(AttemptPolicyTest, ARetryToAnotherReplicaAfterAFastErrorGoesAtOnce) {
  AttemptPolicy p = policy();
  AttemptDecision d =
      p.failed(p.admit(clock_).permit, failure(), {.other_replica = true}, clock_, random_);
  ASSERT_TRUE(d.retry);
  EXPECT_EQ(d.delay, Duration::zero());
  // The same failure with nowhere else to go waits out the backoff.
  d = p.failed(p.admit(clock_).permit, failure(), {.attempt = 1}, clock_, random_);
  ASSERT_TRUE(d.retry);
  EXPECT_EQ(d.delay, milliseconds(100));
  // A timeout, or pushback, is the agent's as a whole: the backoff (or Retry-After) holds.
  breaker_ = std::make_unique<CircuitBreaker>("agent", breaker_->options());
  AttemptPolicy fresh = policy();
  d = fresh.failed(fresh.admit(clock_).permit, failure(ErrorType::network_timeout),
                   {.other_replica = true}, clock_, random_);
  ASSERT_TRUE(d.retry);
  EXPECT_EQ(d.delay, milliseconds(100));
  Error pushback = failure();
  pushback.retry_after = seconds(2);
  d = fresh.failed(fresh.admit(clock_).permit, pushback, {.other_replica = true}, clock_, random_);
  ASSERT_TRUE(d.retry);
  EXPECT_GE(d.delay, seconds(2));
}

TEST_F(AttemptPolicyTest, NoShortcutWhileMostOfTheAgentsCallsFail) {
  with_budget(100);
  RetryBudget& budget = *retry_->options().budget;
  for (int i = 0; i < 20; ++i) budget.record_failure();  // the agent is failing
  AttemptPolicy p = policy();
  AttemptDecision d =
      p.failed(p.admit(clock_).permit, failure(), {.other_replica = true}, clock_, random_);
  ASSERT_TRUE(d.retry);
  EXPECT_EQ(d.delay, milliseconds(100));
  d.token->release_retry();
}

TEST_F(AttemptPolicyTest, ARetryThatCanGoToAnotherReplicaCostsLess) {
  with_budget(1);  // one plain retry, or two to another replica
  auto fail_once = [&] {
    // A fresh breaker each time: the fixture's opens at the third failure.
    breaker_ = std::make_unique<CircuitBreaker>("agent", breaker_->options());
    AttemptPolicy p = policy();
    AttemptDecision d =
        p.failed(p.admit(clock_).permit, failure(), {.other_replica = true}, clock_, random_);
    if (d.token != nullptr) d.token->release_retry();
    return d;
  };
  EXPECT_TRUE(fail_once().retry);
  EXPECT_TRUE(fail_once().retry);
  EXPECT_EQ(fail_once().stop, StopReason::retry_budget_exhausted);
  EXPECT_DOUBLE_EQ(retry_->options().budget->reading(clock_.now()).spent, 1.0);
}

TEST_F(AttemptPolicyTest, ARetryIsRefusedForAnUnhealthyAgentButAFirstCallIsNot) {
  AttemptPolicy p = policy();
  EXPECT_TRUE(p.admit(clock_, {.retrying = false, .health = HealthState::unhealthy}).allowed());
  AttemptPolicy::Admission retry =
      p.admit(clock_, {.retrying = true, .health = HealthState::unhealthy});
  EXPECT_FALSE(retry.allowed());
  EXPECT_EQ(retry.refusal, StopReason::agent_unhealthy);
  EXPECT_TRUE(p.admit(clock_, {.retrying = true, .health = HealthState::degraded}).allowed());
}

TEST_F(AttemptPolicyTest, AStopRequestEndsWithoutDrawingTheJitter) {
  AttemptPolicy p = policy();
  AttemptDecision d =
      p.failed(p.admit(clock_).permit, failure(), {.stop_requested = true}, clock_, random_);
  EXPECT_FALSE(d.retry);
  EXPECT_EQ(d.stop, StopReason::cancelled);
  EXPECT_EQ(random_.draws, 0);
  EXPECT_EQ(breaker_->snapshot(clock_).failure_count, 1);  // the call did fail
}

TEST_F(AttemptPolicyTest, WithoutABreakerOnlyTheRetryRulesApply) {
  AttemptPolicy p(nullptr, *retry_);
  AttemptPolicy::Admission a = p.admit(clock_);
  EXPECT_TRUE(a.allowed());
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(p.failed(a.permit, failure(), {}, clock_, random_).retry);  // no circuit to open
  }
}

TEST_F(AttemptPolicyTest, ASuccessClosesTheBreakersCountAndEarnsTheBudget) {
  with_budget(4, 0.5);
  AttemptPolicy p = policy();
  p.failed(p.admit(clock_).permit, failure(), {}, clock_, random_).token->release_retry();
  const RetryBudget::Reading after_failure = retry_->options().budget->reading(clock_.now());
  p.succeeded(p.admit(clock_).permit, clock_);
  EXPECT_EQ(breaker_->snapshot(clock_).failure_count, 0);
  const RetryBudget::Reading after_success = retry_->options().budget->reading(clock_.now());
  EXPECT_EQ(after_success.calls, after_failure.calls + 1);
  EXPECT_GT(after_success.allowance, after_failure.allowance);
}

// --- Rate limit ---------------------------------------------------------------------------------

// One call per second, no burst: the second call within a second is refused.
RateLimiter one_per_second() {
  return RateLimiter("rate_limit:agent", {.rate_per_second = 1, .burst = 1});
}

TEST_F(AttemptPolicyTest, ARateLimitedAdmissionIsRefusedWithTheLimitersOwnError) {
  RateLimiter limiter = one_per_second();
  AttemptPolicy p(breaker_.get(), *retry_, &limiter);
  ASSERT_TRUE(p.admit(clock_).allowed());
  AttemptPolicy::Admission refused = p.admit(clock_);
  EXPECT_FALSE(refused.allowed());
  EXPECT_EQ(refused.refusal, StopReason::rate_limited);
  EXPECT_FALSE(refused.permit.allowed());  // the caller holds nothing
  ASSERT_TRUE(refused.rejection.has_value());
  // What the daemon's invoker returned when the limit lived there.
  const Error expected = limiter.rejection({.allowed = false, .retry_after = seconds(1)});
  EXPECT_EQ(refused.rejection->type, ErrorType::rate_limit_exceeded);
  EXPECT_EQ(refused.rejection->severity, Severity::low);
  EXPECT_EQ(refused.rejection->stop, StopReason::rate_limited);
  EXPECT_EQ(refused.rejection->kind, expected.kind);
  EXPECT_EQ(refused.rejection->message, "rate limiter 'rate_limit:agent' refused the call");
  EXPECT_EQ(refused.rejection->retry_after, seconds(1));
  EXPECT_FALSE(refused.time_limit.has_value());
}

TEST_F(AttemptPolicyTest, ARateLimitedAdmissionIsNeverRecordedOnTheBreakerNorTheBudget) {
  with_budget(10);
  RateLimiter limiter = one_per_second();
  AttemptPolicy p(breaker_.get(), *retry_, &limiter);
  ASSERT_TRUE(p.admit(clock_).allowed());
  for (int i = 0; i < 5; ++i) {  // more than the breaker's 3 failures
    AttemptPolicy::Admission refused = p.admit(clock_);
    ASSERT_EQ(refused.refusal, StopReason::rate_limited);
    ASSERT_TRUE(AttemptPolicy::refused_locally(*refused.rejection));
    // Reported as the call's failure, as the workflow does: retried after the limiter's wait.
    AttemptDecision d = p.failed(refused.permit, *refused.rejection, {}, clock_, random_);
    EXPECT_TRUE(d.retry);
    EXPECT_EQ(d.delay, milliseconds(1100));  // its retry_after, 10 % more at the draw 0.5
    if (d.token != nullptr) d.token->release_retry();
  }
  EXPECT_EQ(breaker_->state(), CircuitState::closed);
  EXPECT_EQ(breaker_->snapshot(clock_).failure_count, 0);
  EXPECT_EQ(retry_->options().budget->reading(clock_.now()).failures, 0u);
}

TEST_F(AttemptPolicyTest, ARateLimitedProbeGivesItsHalfOpenSlotBack) {
  CircuitBreakerOptions b;
  b.failure_threshold = 1;
  b.recovery_timeout = seconds(10);
  b.half_open_calls = 1;  // one probe: a slot kept by the refused call would shut the agent out
  b.success_threshold = 1;
  CircuitBreaker breaker("agent", b);
  // A token every 20 s, so that the recovery timeout does not refill it.
  RateLimiter limiter("rate_limit:agent", {.rate_per_second = 0.05, .burst = 1});
  AttemptPolicy p(&breaker, *retry_, &limiter);
  p.failed(p.admit(clock_).permit, failure(), {}, clock_, random_);  // opens; spends the token
  ASSERT_EQ(breaker.state(), CircuitState::open);
  clock_.advance(seconds(10));
  EXPECT_EQ(p.admit(clock_).refusal, StopReason::rate_limited);  // the probe, refused
  EXPECT_EQ(breaker.state(), CircuitState::half_open);
  clock_.advance(seconds(10));  // 20 s after the token was spent
  AttemptPolicy::Admission probe = p.admit(clock_);
  ASSERT_TRUE(probe.allowed());  // the probe slot was given back
  p.succeeded(probe.permit, clock_);
  EXPECT_EQ(breaker.state(), CircuitState::closed);
}

TEST_F(AttemptPolicyTest, TheLimiterRefillsOnTheManualClock) {
  RateLimiter limiter("rate_limit:agent", {.rate_per_second = 2, .burst = 2});
  AttemptPolicy p(breaker_.get(), *retry_, &limiter);
  EXPECT_TRUE(p.admit(clock_).allowed());
  EXPECT_TRUE(p.admit(clock_).allowed());  // the burst
  AttemptPolicy::Admission refused = p.admit(clock_);
  ASSERT_EQ(refused.refusal, StopReason::rate_limited);
  EXPECT_EQ(refused.rejection->retry_after, milliseconds(500));
  clock_.advance(milliseconds(499));
  EXPECT_EQ(p.admit(clock_).refusal, StopReason::rate_limited);
  clock_.advance(milliseconds(1));
  EXPECT_TRUE(p.admit(clock_).allowed());  // one token back after 1 / rate
  EXPECT_EQ(p.admit(clock_).refusal, StopReason::rate_limited);
  clock_.advance(seconds(5));  // idle: the bucket fills up to its burst, no further
  EXPECT_TRUE(p.admit(clock_).allowed());
  EXPECT_TRUE(p.admit(clock_).allowed());
  EXPECT_EQ(p.admit(clock_).refusal, StopReason::rate_limited);
}

TEST_F(AttemptPolicyTest, ACallTheBreakerRefusesSpendsNoRateLimitToken) {
  // A token every 100 s: only an unspent one can admit the probe 10 s later.
  RateLimiter limiter("rate_limit:agent", {.rate_per_second = 0.01, .burst = 1});
  AttemptPolicy unlimited = policy();
  for (int i = 0; i < 3; ++i) {
    unlimited.failed(unlimited.admit(clock_).permit, failure(), {}, clock_, random_);
  }
  ASSERT_EQ(breaker_->state(), CircuitState::open);
  AttemptPolicy p(breaker_.get(), *retry_, &limiter);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(p.admit(clock_).refusal, StopReason::circuit_open);
  clock_.advance(seconds(10));
  EXPECT_TRUE(p.admit(clock_).allowed());
}

// --- Time limit and deadline --------------------------------------------------------------------

TEST_F(AttemptPolicyTest, TheTimeLimitIsTheCallTimeoutCappedByWhatIsLeftOfTheDeadline) {
  EXPECT_FALSE(policy().admit(clock_).time_limit.has_value());  // none: the transport's default
  AttemptPolicy p(breaker_.get(), *retry_, nullptr, seconds(30));
  EXPECT_EQ(p.admit(clock_).time_limit, seconds(30));
  EXPECT_EQ(p.admit(clock_, {.deadline = clock_.now() + seconds(60)}).time_limit, seconds(30));
  EXPECT_EQ(p.admit(clock_, {.deadline = clock_.now() + seconds(10)}).time_limit, seconds(10));
  const TimePoint deadline = clock_.now() + seconds(45);
  clock_.advance(seconds(40));
  EXPECT_EQ(p.admit(clock_, {.deadline = deadline}).time_limit, seconds(5));
  // Without a call timeout, the deadline alone limits the call.
  EXPECT_EQ(policy().admit(clock_, {.deadline = deadline}).time_limit, seconds(5));
}

TEST_F(AttemptPolicyTest, TheTasksOwnAttemptTimeoutWinsOverTheCallTimeoutWithinTheDeadline) {
  AttemptPolicy p(breaker_.get(), *retry_, nullptr, seconds(30));
  EXPECT_EQ(p.admit(clock_, {.attempt_timeout = seconds(5)}).time_limit, seconds(5));
  EXPECT_EQ(p.admit(clock_, {.attempt_timeout = seconds(45)}).time_limit, seconds(45));  // longer
  EXPECT_EQ(p.admit(clock_, {.deadline = clock_.now() + seconds(2), .attempt_timeout = seconds(5)})
                .time_limit,
            seconds(2));
  EXPECT_EQ(policy().admit(clock_, {.attempt_timeout = seconds(5)}).time_limit, seconds(5));
}

TEST_F(AttemptPolicyTest, NoCallStartsOnceTheDeadlineHasPassed) {
  RateLimiter limiter = one_per_second();
  AttemptPolicy p(breaker_.get(), *retry_, &limiter, seconds(30));
  const TimePoint deadline = clock_.now() + seconds(1);
  clock_.advance(seconds(1));
  AttemptPolicy::Admission late = p.admit(clock_, {.deadline = deadline});
  EXPECT_FALSE(late.allowed());
  EXPECT_EQ(late.refusal, StopReason::deadline_exceeded);
  EXPECT_FALSE(late.time_limit.has_value());
  EXPECT_TRUE(p.admit(clock_).allowed());  // neither the breaker nor the limiter was asked
}

}  // namespace
}  // namespace mend
