#include "mend/core/retry.h"

#include <gtest/gtest.h>

#include <map>
#include <stdexcept>
#include <system_error>

#include "mend/core/pipeline.h"
#include "mend/core/random.h"
#include "test_env.h"

namespace mend {
namespace {

using namespace mend::testing;

Error classified(ErrorType type, Severity severity = Severity::medium) {
  return Error::classified_as(type, severity, "x");
}

std::system_error timed_out() {
  return std::system_error(std::make_error_code(std::errc::timed_out));
}

TEST(RetryPolicy, DefaultsAreTheSpecifications) {
  RetryOptions o;
  EXPECT_EQ(o.max_retries, 3);
  EXPECT_EQ(o.backoff.base, seconds(1));
  EXPECT_EQ(o.backoff.cap, seconds(60));
  EXPECT_EQ(o.retryable,
            (ErrorTypeSet{ErrorType::network_timeout, ErrorType::connection_reset,
                          ErrorType::rate_limit_exceeded, ErrorType::temporary_unavailable,
                          ErrorType::connection_pool_exhausted}));
  int retryable = 0;
  for (int i = 0; i < kErrorTypeCount; ++i)
    retryable += o.retryable.contains(static_cast<ErrorType>(i));
  EXPECT_EQ(retryable, 5);
}

TEST(RetryPolicy, NonRetryableStopsAtOnce) {
  RetryPolicy p;
  ManualClock clock;
  for (ErrorType t : {ErrorType::validation_failed, ErrorType::database_error,
                      ErrorType::memory_exhausted, ErrorType::external_service_down}) {
    RetryDecision d = p.decide(0, classified(t), clock.now(), std::nullopt, {}, 0.5);
    EXPECT_FALSE(d.retry);
    EXPECT_EQ(d.stop, StopReason::non_retryable) << to_string(t);
  }
}

TEST(RetryPolicy, StopsAfterMaxRetries) {
  RetryPolicy p;
  ManualClock clock;
  const Error e = classified(ErrorType::connection_reset);
  EXPECT_TRUE(p.decide(2, e, clock.now(), std::nullopt, {}, 0.5).retry);
  RetryDecision d = p.decide(3, e, clock.now(), std::nullopt, {}, 0.5);
  EXPECT_FALSE(d.retry);
  EXPECT_EQ(d.stop, StopReason::retries_exhausted);
}

TEST(RetryPolicy, RetryAfterReplacesTheBackoffBoundedByTheCapThenSpreadAfterIt) {
  RetryPolicy p;
  ManualClock clock;
  Error e = classified(ErrorType::rate_limit_exceeded, Severity::low);
  e.retry_after = milliseconds(7300);
  // The draw u spreads the wait over [retry_after, 1.2 x retry_after): 0.5 is 10 % more.
  EXPECT_EQ(p.decide(0, e, clock.now(), std::nullopt, {}, 0.0).delay, milliseconds(7300));
  EXPECT_EQ(p.decide(0, e, clock.now(), std::nullopt, {}, 0.5).delay, milliseconds(8030));
  e.retry_after = seconds(600);
  EXPECT_EQ(p.decide(0, e, clock.now(), std::nullopt, {}, 0.0).delay, seconds(60));
  EXPECT_EQ(p.decide(0, e, clock.now(), std::nullopt, {}, 0.5).delay, seconds(66));
  RetryOptions exact;
  exact.retry_after_jitter = 0;
  e.retry_after = milliseconds(7300);
  EXPECT_EQ(RetryPolicy(exact).decide(0, e, clock.now(), std::nullopt, {}, 0.9).delay,
            milliseconds(7300));
  e.retry_after = seconds(600);
  RetryOptions ignore;
  ignore.honor_retry_after = false;
  EXPECT_EQ(RetryPolicy(ignore).decide(0, e, clock.now(), std::nullopt, {}, 0.5).delay, seconds(2));
}

TEST(RetryPolicy, ClientsAnAgentPausedComeBackSpreadOutNeverBeforeItAsked) {
  // 1,000 clients of one agent that answered 429 with Retry-After: 2 s at the same instant.
  RetryPolicy p;
  ManualClock clock;
  SeededRandom random(2026);
  Error e = classified(ErrorType::rate_limit_exceeded, Severity::low);
  e.retry_after = seconds(2);
  std::map<long long, int> per_100ms;  // how many come back in each 100 ms after the pause
  for (int client = 0; client < 1000; ++client) {
    const Duration d = p.decide(0, e, clock.now(), std::nullopt, {}, random.next_unit()).delay;
    ASSERT_GE(d, seconds(2));
    ASSERT_LT(d, milliseconds(2400));
    ++per_100ms[std::chrono::duration_cast<milliseconds>(d - seconds(2)).count() / 100];
  }
  // Four slices of 100 ms, each with about a quarter of them: no instant takes them all.
  ASSERT_EQ(per_100ms.size(), 4u);
  for (const auto& [slice, clients] : per_100ms) {
    EXPECT_GT(clients, 180) << slice;
    EXPECT_LT(clients, 320) << slice;
  }
}

TEST(RetryPolicy, ARetryAfterJitterOutsideZeroToOneIsRefused) {
  RetryOptions o;
  o.retry_after_jitter = 1.5;
  EXPECT_THROW(RetryPolicy{o}, std::invalid_argument);
  o.retry_after_jitter = -0.1;
  EXPECT_THROW(RetryPolicy{o}, std::invalid_argument);
}

TEST(RetryPolicy, StopsWhenTheNextAttemptWouldMissTheDeadline) {
  RetryPolicy p;
  ManualClock clock;
  const Error e = classified(ErrorType::connection_reset);
  const TimePoint now = clock.now();
  EXPECT_TRUE(p.decide(1, e, now, now + milliseconds(2001), {}, 0.5).retry);  // delay 2 s
  RetryDecision d = p.decide(1, e, now, now + seconds(2), {}, 0.5);
  EXPECT_FALSE(d.retry);
  EXPECT_EQ(d.stop, StopReason::deadline_exceeded);
}

TEST(RetryPolicy, RejectsInvalidOptions) {
  RetryOptions o;
  o.max_retries = -1;
  EXPECT_THROW(RetryPolicy{o}, std::invalid_argument);
  o = {};
  o.backoff.multiplier = 0.5;
  EXPECT_THROW(RetryPolicy{o}, std::invalid_argument);
  o = {};
  o.backoff.cap = -seconds(1);
  EXPECT_THROW(RetryPolicy{o}, std::invalid_argument);
}

class RetryExecutor : public ::testing::Test {
 protected:
  Pipeline retry_pipeline(RetryOptions options = {}) {
    return Pipeline::Builder().env(t.env()).retry(std::move(options)).build();
  }
  TestEnv t;
};

TEST_F(RetryExecutor, RetriesTransientErrorsWithErrorScaledDelays) {
  int calls = 0;
  int v = retry_pipeline().execute([&] {
    if (++calls <= 3) throw std::system_error(std::make_error_code(std::errc::connection_reset));
    return 42;
  });
  EXPECT_EQ(v, 42);
  EXPECT_EQ(calls, 4);
  EXPECT_EQ(t.sleeper.sleeps(), (std::vector<Duration>{seconds(1), seconds(2), seconds(4)}));
  EXPECT_EQ(t.elapsed(), seconds(7));
  EXPECT_EQ(t.events.count(EventKind::retry_scheduled), 3u);
  EXPECT_EQ(t.events.count(EventKind::gave_up), 0u);
}

TEST_F(RetryExecutor, TimeoutsWaitHalfAgainAsLong) {
  int calls = 0;
  EXPECT_THROW(retry_pipeline().execute([&] {
    ++calls;
    throw timed_out();
  }),
               RetryExhaustedError);
  EXPECT_EQ(calls, 4);
  EXPECT_EQ(t.sleeper.sleeps(),
            (std::vector<Duration>{milliseconds(1500), seconds(3), seconds(6)}));
}

TEST_F(RetryExecutor, ExhaustionCarriesTheLastErrorAndEveryAttempt) {
  int calls = 0;
  try {
    retry_pipeline().execute([&]() -> int {
      ++calls;
      throw std::system_error(std::make_error_code(std::errc::connection_refused), "agent down");
    });
    FAIL() << "expected RetryExhaustedError";
  } catch (const RetryExhaustedError& e) {
    const Error& last = e.last_error();
    EXPECT_EQ(last.type, ErrorType::connection_reset);
    EXPECT_EQ(last.stop, StopReason::retries_exhausted);
    EXPECT_NE(last.message.find("agent down"), std::string::npos);
    ASSERT_EQ(last.attempts.size(), 4u);
    const Duration delays[] = {seconds(1), seconds(2), seconds(4), Duration{}};
    for (int i = 0; i < 4; ++i) {
      EXPECT_EQ(last.attempts[i].number, i);
      EXPECT_EQ(last.attempts[i].type, ErrorType::connection_reset);
      EXPECT_EQ(last.attempts[i].severity, Severity::medium);
      EXPECT_EQ(last.attempts[i].delay, delays[i]);
    }
    // The original exception is kept.
    EXPECT_THROW(std::rethrow_exception(last.exception), std::system_error);
  }
  EXPECT_EQ(calls, 4);
  auto events = t.events.events();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().kind, EventKind::gave_up);
  EXPECT_EQ(events.back().stop, StopReason::retries_exhausted);
}

TEST_F(RetryExecutor, NonRetryableErrorsAreRaisedAtOnceAsTheOriginal) {
  int calls = 0;
  EXPECT_THROW(retry_pipeline().execute([&]() -> int {
    ++calls;
    throw std::invalid_argument("bad task");
  }),
               std::invalid_argument);
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(t.sleeper.sleeps().empty());
  ASSERT_EQ(t.events.count(EventKind::gave_up), 1u);
  EXPECT_EQ(t.events.events().back().stop, StopReason::non_retryable);
}

TEST_F(RetryExecutor, ResultReturningCallablesAreClassifiedAlike) {
  int calls = 0;
  Result<std::string> r = retry_pipeline().try_execute([&]() -> Result<std::string> {
    if (++calls <= 2) return Error::http(503, "busy");
    return std::string("done");
  });
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, "done");
  EXPECT_EQ(t.sleeper.sleeps(), (std::vector<Duration>{seconds(1), seconds(2)}));

  calls = 0;
  Result<std::string> bad = retry_pipeline().try_execute([&]() -> Result<std::string> {
    ++calls;
    return Error::http(400, "malformed");
  });
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().type, ErrorType::validation_failed);
  EXPECT_EQ(bad.error().stop, StopReason::non_retryable);
  EXPECT_EQ(calls, 1);
}

TEST_F(RetryExecutor, HonoursRetryAfter) {
  int calls = 0;
  Result<int> r = retry_pipeline().try_execute([&]() -> Result<int> {
    if (++calls == 1) return Error::http(429, "slow down", milliseconds(12500));
    return 1;
  });
  ASSERT_TRUE(r.ok());
  // 12.5 s as asked, then a tenth more (retry_after_jitter 0.2 at the draw 0.5).
  EXPECT_EQ(t.sleeper.sleeps(), (std::vector<Duration>{milliseconds(13750)}));
}

TEST_F(RetryExecutor, StopsAtTheDeadline) {
  int calls = 0;
  CallOptions options;
  options.deadline = t.clock.now() + milliseconds(2500);
  try {
    retry_pipeline().execute(
        [&]() -> int {
          ++calls;
          throw std::system_error(std::make_error_code(std::errc::connection_reset));
        },
        options);
    FAIL();
  } catch (const DeadlineExceededError& e) {
    EXPECT_EQ(e.error().stop, StopReason::deadline_exceeded);
    EXPECT_EQ(e.error().attempts.size(), 2u);
  }
  EXPECT_EQ(calls, 2);  // at 0 s and 1 s; the next would start at 3 s, after the deadline
  EXPECT_EQ(t.elapsed(), seconds(1));

  // A deadline already past refuses the call before the first attempt.
  calls = 0;
  options.deadline = t.clock.now();
  EXPECT_THROW(retry_pipeline().execute([&] { return ++calls; }, options), DeadlineExceededError);
  EXPECT_EQ(calls, 0);
}

TEST_F(RetryExecutor, CancellationStopsWaitsAndAttempts) {
  std::stop_source stop;
  CallOptions options;
  options.stop = stop.get_token();
  int calls = 0;
  EXPECT_THROW(retry_pipeline().execute(
                   [&]() -> int {
                     if (++calls == 2) stop.request_stop();
                     throw timed_out();
                   },
                   options),
               CancelledError);
  EXPECT_EQ(calls, 2);

  calls = 0;
  EXPECT_THROW(retry_pipeline().execute([&] { return ++calls; }, options), CancelledError);
  EXPECT_EQ(calls, 0);
}

TEST_F(RetryExecutor, ZeroRetriesMeansOneAttempt) {
  RetryOptions o;
  o.max_retries = 0;
  int calls = 0;
  EXPECT_THROW(retry_pipeline(o).execute([&]() -> int {
    ++calls;
    throw timed_out();
  }),
               RetryExhaustedError);
  EXPECT_EQ(calls, 1);
}

TEST_F(RetryExecutor, JitterComesFromTheInjectedRandomSource) {
  t.random = std::make_unique<FixedRandom>(0.0);  // -25 %
  Pipeline p = retry_pipeline();
  int calls = 0;
  Result<int> r = p.try_execute([&]() -> Result<int> {
    if (++calls <= 3) return Error::http(503);
    return 0;
  });
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(t.sleeper.sleeps(),
            (std::vector<Duration>{milliseconds(750), milliseconds(1500), seconds(3)}));
}

TEST_F(RetryExecutor, SeededJitterIsReproducibleAndBounded) {
  auto run = [&](std::uint64_t seed) {
    TestEnv local;
    local.random = std::make_unique<SeededRandom>(seed);
    Pipeline p = Pipeline::Builder().env(local.env()).retry({}).build();
    Result<int> r = p.try_execute([]() -> Result<int> { return Error::http(503); });
    EXPECT_FALSE(r.ok());
    return local.sleeper.sleeps();
  };
  for (std::uint64_t seed = 1; seed <= 200; ++seed) {
    auto a = run(seed);
    ASSERT_EQ(a, run(seed));
    ASSERT_EQ(a.size(), 3u);
    for (std::size_t i = 0; i < a.size(); ++i) {
      const double nominal = 1 << i;
      ASSERT_GE(to_seconds(a[i]), nominal * 0.75 - 1e-9);
      ASSERT_LE(to_seconds(a[i]), nominal * 1.25 + 1e-9);
    }
  }
}

}  // namespace
}  // namespace mend
