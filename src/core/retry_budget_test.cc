#include "mend/core/retry_budget.h"

#include <gtest/gtest.h>

#include <stdexcept>

#include "mend/core/pipeline.h"
#include "test_env.h"

namespace mend {
namespace {

using namespace mend::testing;

TEST(RetryBudget, RetriesOnlyWhileMoreThanHalfTheTokensRemain) {
  RetryBudget b({.max_tokens = 10, .token_ratio = 0.5});
  EXPECT_DOUBLE_EQ(b.tokens(), 10);
  for (int i = 0; i < 4; ++i) b.record_failure();
  EXPECT_DOUBLE_EQ(b.tokens(), 6);
  ASSERT_TRUE(b.try_acquire_retry());
  b.release_retry();
  b.record_failure();  // 5: exactly half is not enough
  EXPECT_FALSE(b.try_acquire_retry());
  b.record_success();  // 5.5
  EXPECT_DOUBLE_EQ(b.tokens(), 5.5);
  EXPECT_TRUE(b.try_acquire_retry());
  b.release_retry();
  EXPECT_EQ(b.retries_in_flight(), 0);
}

TEST(RetryBudget, TokensStayBetweenZeroAndMax) {
  RetryBudget b({.max_tokens = 3, .token_ratio = 1});
  for (int i = 0; i < 10; ++i) b.record_failure();
  EXPECT_DOUBLE_EQ(b.tokens(), 0);
  for (int i = 0; i < 10; ++i) b.record_success();
  EXPECT_DOUBLE_EQ(b.tokens(), 3);
}

TEST(RetryBudget, InFlightFloorAllowsAFewRetriesWhateverTheTokens) {
  RetryBudget b({.max_tokens = 10, .token_ratio = 0.1, .min_retries_in_flight = 2});
  for (int i = 0; i < 10; ++i) b.record_failure();
  ASSERT_TRUE(b.try_acquire_retry());
  ASSERT_TRUE(b.try_acquire_retry());
  EXPECT_FALSE(b.try_acquire_retry());
  b.release_retry();
  EXPECT_TRUE(b.try_acquire_retry());
  EXPECT_EQ(b.retries_in_flight(), 2);
}

TEST(RetryBudget, RejectsInvalidOptions) {
  EXPECT_THROW(RetryBudget({.max_tokens = 0}), std::invalid_argument);
  EXPECT_THROW(RetryBudget({.max_tokens = 10, .token_ratio = -1}), std::invalid_argument);
  EXPECT_THROW(RetryBudget({.max_tokens = 10, .token_ratio = 0.1, .min_retries_in_flight = -1}),
               std::invalid_argument);
}

TEST(RetryBudget, KeepsAmplificationNearOneDuringAHardOutage) {
  TestEnv t;
  RetryOptions retry;
  retry.budget = std::make_shared<RetryBudget>(RetryBudgetOptions{});  // 100 tokens, ratio 0.1
  Pipeline p = Pipeline::Builder().env(t.env()).retry(retry).build();
  int attempts = 0;
  int exhausted_by_budget = 0;
  constexpr int kCalls = 1000;
  for (int i = 0; i < kCalls; ++i) {
    Result<int> r = p.try_execute([&]() -> Result<int> {
      ++attempts;
      return Error::from_code(std::make_error_code(std::errc::connection_refused));
    });
    ASSERT_FALSE(r.ok());
    exhausted_by_budget += r.error().stop == StopReason::retry_budget_exhausted;
  }
  // Without a budget: 4000 attempts. With it, retries stop once 50 tokens are gone.
  EXPECT_LE(attempts, kCalls + 50);
  EXPECT_GE(exhausted_by_budget, kCalls - 20);
  EXPECT_LE(static_cast<double>(attempts) / kCalls, 1.05);

  // The service recovers: successes refill the bucket and retries come back.
  for (int i = 0; i < 600; ++i) {
    ASSERT_TRUE(p.try_execute([]() -> Result<int> { return 1; }).ok());
  }
  EXPECT_GT(retry.budget->tokens(), 50);
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
