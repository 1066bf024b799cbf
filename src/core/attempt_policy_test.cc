// AttemptPolicy's decisions, once, on a manual clock and a fixed random source: the order in
// which the breaker, the retry policy, the open-circuit check and the retry budget decide after a
// failed call, and what admits a call or a retry. The workflow, the relay and the pipeline's
// stages all go through it, so their tests check the wiring and these the rules.
#include "mend/core/attempt_policy.h"

#include <gtest/gtest.h>

#include <memory>

namespace mend {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// Counts its draws, so that a test can tell whether the backoff's jitter was drawn.
class CountingRandom final : public RandomSource {
 public:
  double next_unit() noexcept override {
    ++draws;
    return 0.5;
  }
  int draws = 0;
};

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

  // A budget with `tokens` tokens (a retry needs more than half of them).
  void with_budget(double max_tokens) {
    RetryOptions r = retry_->options();
    r.budget = std::make_shared<RetryBudget>(RetryBudgetOptions{max_tokens, 0.1, 0});
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
  const double full = retry_->options().budget->tokens();
  for (int i = 0; i < 5; ++i) {
    p.failed(p.admit(clock_).permit, failure(ErrorType::validation_failed), {}, clock_, random_);
    Error refused = failure();
    refused.stop = StopReason::rate_limited;
    AttemptDecision d = p.failed(p.admit(clock_).permit, refused, {}, clock_, random_);
    if (d.token != nullptr) d.token->release_retry();
  }
  EXPECT_EQ(breaker_->state(), CircuitState::closed);
  EXPECT_EQ(breaker_->snapshot(clock_).failure_count, 0);
  EXPECT_EQ(retry_->options().budget->tokens(), full);
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
  with_budget(4);  // retries allowed while more than 2 tokens are left
  AttemptPolicy p = policy();
  AttemptDecision first = p.failed(p.admit(clock_).permit, failure(), {}, clock_, random_);
  ASSERT_TRUE(first.retry);
  ASSERT_NE(first.token, nullptr);
  first.token->release_retry();
  AttemptDecision second = p.failed(p.admit(clock_).permit, failure(), {}, clock_, random_);
  EXPECT_FALSE(second.retry);  // 4 -> 3 -> 2 tokens: no more than half left
  EXPECT_EQ(second.stop, StopReason::retry_budget_exhausted);
  EXPECT_EQ(second.token, nullptr);
}

TEST_F(AttemptPolicyTest, ARetryIsRefusedForAnUnhealthyAgentButAFirstCallIsNot) {
  AttemptPolicy p = policy();
  EXPECT_TRUE(p.admit(clock_, false, HealthState::unhealthy).allowed());
  AttemptPolicy::Admission retry = p.admit(clock_, true, HealthState::unhealthy);
  EXPECT_FALSE(retry.allowed());
  EXPECT_EQ(retry.refusal, StopReason::agent_unhealthy);
  EXPECT_TRUE(p.admit(clock_, true, HealthState::degraded).allowed());
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
  with_budget(4);
  AttemptPolicy p = policy();
  p.failed(p.admit(clock_).permit, failure(), {}, clock_, random_).token->release_retry();
  const double after_failure = retry_->options().budget->tokens();
  p.succeeded(p.admit(clock_).permit, clock_);
  EXPECT_EQ(breaker_->snapshot(clock_).failure_count, 0);
  EXPECT_GT(retry_->options().budget->tokens(), after_failure);
}

}  // namespace
}  // namespace mend
