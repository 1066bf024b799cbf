#include "mend/core/pipeline.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <system_error>

#include "test_env.h"

namespace mend {
namespace {

using namespace mend::testing;

std::system_error refused() {
  return std::system_error(std::make_error_code(std::errc::connection_refused), "refused");
}

class PipelineTest : public ::testing::Test {
 protected:
  std::shared_ptr<CircuitBreaker> breaker =
      std::make_shared<CircuitBreaker>("agent", CircuitBreakerOptions{});
  TestEnv t;
};

TEST_F(PipelineTest, SuccessPassesValuesThroughAndEmitsNothing) {
  Pipeline p = Pipeline::Builder().env(t.env()).retry({}).circuit_breaker(breaker).build();
  EXPECT_EQ(p.execute([] { return std::string("ok"); }), "ok");
  int side_effect = 0;
  p.execute([&] { ++side_effect; });  // void callables
  EXPECT_EQ(side_effect, 1);
  Result<void> r = p.try_execute([]() -> Result<void> { return {}; });
  EXPECT_TRUE(r.ok());
  EXPECT_TRUE(t.events.events().empty());
  EXPECT_TRUE(t.sleeper.sleeps().empty());
}

TEST_F(PipelineTest, RetryOutsideTheBreakerStopsWhenTheCircuitOpens) {
  Pipeline p = Pipeline::Builder().env(t.env()).retry({}).circuit_breaker(breaker).build();
  int calls = 0;
  auto failing = [&]() -> int {
    ++calls;
    throw refused();
  };
  EXPECT_THROW(p.execute(failing), RetryExhaustedError);  // 4 failures
  EXPECT_EQ(breaker->state(), CircuitState::closed);
  try {
    p.execute(failing);  // 5th failure opens it; the retry then meets the open circuit
    FAIL();
  } catch (const CircuitOpenError& e) {
    EXPECT_EQ(e.error().stop, StopReason::circuit_open);
    ASSERT_EQ(e.error().attempts.size(), 2u);
    EXPECT_EQ(e.error().attempts[0].type, ErrorType::connection_reset);
    EXPECT_EQ(e.error().attempts[1].type, ErrorType::external_service_down);
  }
  EXPECT_EQ(calls, 5);
  EXPECT_EQ(breaker->state(), CircuitState::open);
  // Rejected at once, without reaching the agent or waiting.
  t.sleeper.clear();
  EXPECT_THROW(p.execute(failing), CircuitOpenError);
  EXPECT_EQ(calls, 5);
  EXPECT_TRUE(t.sleeper.sleeps().empty());
  EXPECT_GE(t.events.count(EventKind::circuit_rejected), 2u);
}

TEST_F(PipelineTest, BreakerOutsideTheRetrySeesOneOutcomePerCall) {
  Pipeline p = Pipeline::Builder().env(t.env()).circuit_breaker(breaker).retry({}).build();
  for (int i = 0; i < 2; ++i) {
    Result<int> r = p.try_execute([]() -> Result<int> { return Error::http(503); });
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().stop, StopReason::retries_exhausted);
  }
  EXPECT_EQ(breaker->snapshot(t.clock).failure_count, 2);
}

TEST_F(PipelineTest, TheWholeCycleOnAManualClock) {
  Pipeline p = Pipeline::Builder().env(t.env()).circuit_breaker(breaker).build();
  bool healthy = false;
  auto agent = [&]() -> Result<int> {
    if (!healthy) return Error::http(503);
    return 200;
  };
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(p.try_execute(agent).ok());
  EXPECT_EQ(breaker->state(), CircuitState::open);
  Result<int> rejected = p.try_execute(agent);
  EXPECT_EQ(rejected.error().stop, StopReason::circuit_open);
  EXPECT_EQ(rejected.error().retry_after, seconds(60));
  healthy = true;
  t.clock.advance(seconds(60));
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(p.try_execute(agent).ok());
  EXPECT_EQ(breaker->state(), CircuitState::closed);
}

TEST_F(PipelineTest, NonStandardExceptionsAreClassifiedByDefaultAndRethrown) {
  Pipeline p = Pipeline::Builder().env(t.env()).retry({}).build();
  EXPECT_THROW(p.execute([]() -> int { throw 42; }), int);
  Result<int> r = p.try_execute([]() -> int { throw 42; });
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().type, ErrorType::processing_failed);
  EXPECT_EQ(r.error().stop, StopReason::non_retryable);
}

TEST_F(PipelineTest, ClassificationUsesTheCallsContext) {
  Classifier classifier = Classifier::standard();
  classifier.on_predicate(
      "vip", [](const Error&, const Context& ctx) { return ctx.count("vip") > 0; },
      ErrorType::external_service_down, Severity::critical);
  Env env = t.env();
  env.classifier = &classifier;
  Pipeline p = Pipeline::Builder().env(env).build();
  Context vip{{"vip", "yes"}};
  CallOptions options;
  options.context = &vip;
  Result<int> r = p.try_execute([]() -> Result<int> { return Error::http(503); }, options);
  EXPECT_EQ(r.error().severity, Severity::critical);
  Result<int> plain = p.try_execute([]() -> Result<int> { return Error::http(503); });
  EXPECT_EQ(plain.error().severity, Severity::medium);
}

TEST_F(PipelineTest, AnOuterRetryDoesNotMultiplyAnInnerOnesAttempts) {
  Pipeline inner = Pipeline::Builder().env(t.env()).retry({}).build();
  Pipeline outer = Pipeline::Builder().env(t.env()).retry({}).build();
  int calls = 0;
  Result<int> r = outer.try_execute([&]() -> Result<int> {
    return inner.try_execute([&]() -> Result<int> {
      ++calls;
      return Error::http(503);
    });
  });
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().stop, StopReason::retries_exhausted);
  EXPECT_EQ(calls, 4);
}

TEST_F(PipelineTest, CancelledCallsDoNotCountAgainstTheBreaker) {
  Pipeline p = Pipeline::Builder().env(t.env()).circuit_breaker(breaker).retry({}).build();
  std::stop_source stop;
  CallOptions options;
  options.stop = stop.get_token();
  Result<int> r = p.try_execute(
      [&]() -> Result<int> {
        stop.request_stop();
        return Error::http(503);
      },
      options);
  EXPECT_EQ(r.error().stop, StopReason::cancelled);
  EXPECT_EQ(breaker->snapshot(t.clock).failure_count, 0);
}

TEST_F(PipelineTest, ACallReportSaysHowManyAttemptsItTook) {
  Pipeline p = Pipeline::Builder().env(t.env()).retry({}).circuit_breaker(breaker).build();
  CallReport report;
  CallOptions options;
  options.report = &report;
  EXPECT_EQ(p.execute([] { return 1; }, options), 1);
  EXPECT_EQ(report.attempts, 1);
  EXPECT_EQ(report.waited, Duration::zero());
  int calls = 0;
  EXPECT_EQ(p.execute(
                [&]() -> Result<int> {
                  if (++calls < 3) return Error::http(502);
                  return 2;
                },
                options),
            2);
  EXPECT_EQ(report.attempts, 3);
  EXPECT_EQ(report.waited, seconds(3));
}

TEST_F(PipelineTest, AThrownMendExceptionKeepsTheErrorItCarries) {
  Pipeline p = Pipeline::Builder().env(t.env()).retry({}).build();
  int calls = 0;
  Result<int> r = p.try_execute([&]() -> int {
    if (++calls == 1) throw Exception(Error::http(429, "quota", seconds(9)));
    return 5;
  });
  ASSERT_TRUE(r.ok());
  // Its Retry-After, 9 s, then a tenth more (retry_after_jitter 0.2 at the draw 0.5).
  EXPECT_EQ(t.sleeper.sleeps(), (std::vector<Duration>{milliseconds(9900)}));
}

TEST_F(PipelineTest, ABreakerIgnoresTheTypesItIsToldTo) {
  CircuitBreakerOptions o;
  o.failure_threshold = 2;
  o.ignored = {ErrorType::validation_failed};
  auto strict = std::make_shared<CircuitBreaker>("agent", o);
  Pipeline p = Pipeline::Builder().env(t.env()).circuit_breaker(strict).build();
  for (int i = 0; i < 5; ++i) (void)p.try_execute([]() -> Result<int> { return Error::http(400); });
  EXPECT_EQ(strict->state(), CircuitState::closed);
  EXPECT_EQ(strict->snapshot(t.clock).failure_count, 0);
  (void)p.try_execute([]() -> Result<int> { return Error::http(503); });
  (void)p.try_execute([]() -> Result<int> { return Error::http(503); });
  EXPECT_EQ(strict->state(), CircuitState::open);
}

TEST_F(PipelineTest, LocalRefusalsDoNotDrainTheRetryBudget) {
  auto limiter =
      std::make_shared<RateLimiter>("api", RateLimiterOptions{.rate_per_second = 1, .burst = 1});
  RetryOptions retry;
  retry.budget = std::make_shared<RetryBudget>(RetryBudgetOptions{});
  Pipeline p = Pipeline::Builder().env(t.env()).retry(retry).rate_limiter(limiter).build();
  for (int i = 0; i < 20; ++i) EXPECT_EQ(p.execute([] { return 1; }), 1);
  EXPECT_EQ(retry.budget->reading(t.clock.now()).failures, 0u);
}

// The flattened success path must behave as the general path does.

TEST_F(PipelineTest, AFailureIsRecordedAgainstThePermitItWasAdmittedWith) {
  Pipeline p = Pipeline::Builder().env(t.env()).circuit_breaker(breaker).build();
  Result<int> r = p.try_execute([&]() -> Result<int> {
    // While this call runs, others open the circuit and its recovery timeout passes.
    for (int i = 0; i < 5; ++i) {
      (void)p.try_execute([]() -> Result<int> { return Error::http(503); });
    }
    t.clock.advance(seconds(60));
    return Error::http(400, "bad task");
  });
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().type, ErrorType::validation_failed);  // its own error, not circuit_open
  EXPECT_EQ(r.error().stop, StopReason::none);
  // It was admitted while closed, long ago: no phantom half-open probe, no re-opening.
  EXPECT_EQ(breaker->state(), CircuitState::open);
  EXPECT_EQ(breaker->snapshot(t.clock).transitions, 1u);
}

TEST_F(PipelineTest, TheThrowingPathRecordsAFailureAgainstItsOwnPermitToo) {
  Pipeline p = Pipeline::Builder().env(t.env()).retry({}).circuit_breaker(breaker).build();
  int calls = 0;
  EXPECT_THROW(p.execute([&]() -> int {
    ++calls;
    for (int i = 0; i < 5; ++i) {
      (void)p.try_execute([]() -> Result<int> { return Error::http(400); });
    }
    t.clock.advance(seconds(60));
    throw std::invalid_argument("bad task");
  }),
               std::invalid_argument);
  EXPECT_EQ(calls, 1);  // not retryable: raised at once, as the original
  EXPECT_EQ(breaker->state(), CircuitState::open);
  EXPECT_EQ(breaker->snapshot(t.clock).transitions, 1u);
}

TEST_F(PipelineTest, ASuccessForgivesAFailureThatHappenedDuringIt) {
  Pipeline p = Pipeline::Builder().env(t.env()).retry({}).circuit_breaker(breaker).build();
  RetryOptions once;
  once.max_retries = 0;
  Pipeline other = Pipeline::Builder().env(t.env()).retry(once).circuit_breaker(breaker).build();
  EXPECT_EQ(p.execute([&] {
    (void)other.try_execute([]() -> Result<int> { return Error::http(503); });
    EXPECT_EQ(breaker->snapshot(t.clock).failure_count, 1);
    return 7;
  }),
            7);
  EXPECT_EQ(breaker->snapshot(t.clock).failure_count, 0);
}

TEST_F(PipelineTest, AFailedCallIsTimedFromItsAdmission) {
  CircuitBreakerOptions o = CircuitBreakerOptions::failure_rate();
  o.window_size = 4;
  o.minimum_calls = 4;
  o.failure_rate_threshold = 1.0;
  o.slow_call_threshold = seconds(1);
  o.slow_call_rate_threshold = 0.5;
  auto rate = std::make_shared<CircuitBreaker>("agent", o);
  Pipeline p = Pipeline::Builder().env(t.env()).circuit_breaker(rate).build();
  for (int i = 0; i < 2; ++i) EXPECT_EQ(p.execute([] { return 1; }), 1);
  for (int i = 0; i < 2; ++i) {
    Result<int> r = p.try_execute([&]() -> Result<int> {
      t.clock.advance(seconds(2));  // slow, then fails
      return Error::http(504);
    });
    EXPECT_FALSE(r.ok());
  }
  EXPECT_EQ(rate->state(), CircuitState::open);  // 2 of 4 slow
}

TEST_F(PipelineTest, ThrownAndReturnedExceptionsAreClassifiedAlike) {
  Pipeline p = Pipeline::Builder().env(t.env()).build();
  Result<int> thrown = p.try_execute([]() -> int { throw std::bad_alloc(); });
  Result<int> returned = p.try_execute([]() -> Result<int> {
    try {
      throw std::bad_alloc();
    } catch (...) {
      return Error::from_exception(std::current_exception());
    }
  });
  ASSERT_FALSE(thrown.ok());
  ASSERT_FALSE(returned.ok());
  EXPECT_EQ(thrown.error().type, ErrorType::memory_exhausted);
  EXPECT_EQ(returned.error().type, ErrorType::memory_exhausted);
  EXPECT_EQ(returned.error().severity, Severity::high);
}

TEST_F(PipelineTest, AnInnerBreakersRefusalDoesNotCountAgainstTheOuterOne) {
  auto inner = std::make_shared<CircuitBreaker>("inner", CircuitBreakerOptions{});
  inner->isolate(t.clock);
  CircuitBreakerOptions strict;
  strict.failure_threshold = 1;
  auto outer = std::make_shared<CircuitBreaker>("outer", strict);
  Pipeline p =
      Pipeline::Builder().env(t.env()).circuit_breaker(outer).circuit_breaker(inner).build();
  EXPECT_THROW(p.execute([] { return 1; }), CircuitOpenError);
  EXPECT_EQ(outer->state(), CircuitState::closed);
}

TEST_F(PipelineTest, EventsDescribeEachDecision) {
  Pipeline p = Pipeline::Builder().env(t.env()).retry({}).build();
  int calls = 0;
  (void)p.try_execute([&]() -> Result<int> {
    if (++calls == 1) return Error::http(503, "busy");
    return 1;
  });
  auto events = t.events.events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].describe(),
            "retry_scheduled [retry] attempt 0 failed with temporary_unavailable/medium, retry in "
            "1.000 s (busy)");
  EXPECT_EQ(events[0].at, t.start());
}

}  // namespace
}  // namespace mend
