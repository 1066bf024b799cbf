// Many threads against one policy. `make test` runs this file again under ThreadSanitizer.
#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <thread>
#include <vector>

#include "mend/core/bulkhead.h"
#include "mend/core/circuit_breaker.h"
#include "mend/core/pipeline.h"
#include "mend/core/random.h"
#include "mend/core/rate_limiter.h"
#include "mend/core/retry_budget.h"
#include "mend/core/system_clock.h"

namespace mend {
namespace {

using std::chrono::seconds;
constexpr int kThreads = 4;

template <class F>
void run_threads(F body) {
  std::vector<std::thread> threads;
  std::barrier start(kThreads);
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      start.arrive_and_wait();
      body(i);
    });
  }
  for (auto& t : threads) t.join();
}

TEST(Concurrency, ClosedBreakerUnderOnlySuccessesNeverChanges) {
  ManualClock clock;
  CircuitBreaker breaker("b", {});
  run_threads([&](int) {
    for (int i = 0; i < 20000; ++i) {
      auto p = breaker.try_acquire(clock);
      ASSERT_TRUE(p.allowed());
      breaker.on_success(p, clock);
    }
  });
  EXPECT_EQ(breaker.state(), CircuitState::closed);
  EXPECT_EQ(breaker.snapshot(clock).transitions, 0u);
}

TEST(Concurrency, ConsecutiveBreakerStaysConsistentUnderMixedOutcomes) {
  ManualClock clock;
  CircuitBreakerOptions o;
  o.recovery_timeout = std::chrono::milliseconds(5);
  CircuitBreaker breaker("b", o);
  std::atomic<int> notified{0};
  breaker.add_listener([&](const CircuitTransition&) { notified.fetch_add(1); });
  run_threads([&](int id) {
    SeededRandom random(static_cast<std::uint64_t>(id) + 1);
    for (int i = 0; i < 20000; ++i) {
      if (id == 0 && i % 50 == 0) clock.advance(std::chrono::milliseconds(1));
      auto p = breaker.try_acquire(clock);
      if (!p.allowed()) continue;
      if (random.next_unit() < 0.3) {
        breaker.on_failure(p, clock);
      } else {
        breaker.on_success(p, clock);
      }
    }
  });
  CircuitSnapshot s = breaker.snapshot(clock);
  EXPECT_EQ(static_cast<std::uint64_t>(notified.load()), s.transitions);
  EXPECT_GT(s.transitions, 0u);
  EXPECT_LE(s.half_open_in_flight, o.half_open_calls);
  if (s.state == CircuitState::closed) {
    EXPECT_LT(s.failure_count, o.failure_threshold);
  }
}

TEST(Concurrency, HalfOpenAdmitsExactlyItsProbesAcrossThreads) {
  ManualClock clock;
  CircuitBreaker breaker("b", {});
  for (int i = 0; i < 5; ++i) {
    auto p = breaker.try_acquire(clock);
    breaker.on_failure(p, clock);
  }
  clock.advance(seconds(60));
  std::atomic<int> admitted{0};
  run_threads([&](int) {
    for (int i = 0; i < 1000; ++i) admitted += breaker.try_acquire(clock).allowed();
  });
  EXPECT_EQ(admitted.load(), 3);
}

TEST(Concurrency, FailureRateBreakerUnderThreads) {
  ManualClock clock;
  CircuitBreakerOptions o = CircuitBreakerOptions::failure_rate();
  o.recovery_timeout = std::chrono::milliseconds(5);
  CircuitBreaker breaker("b", o);
  run_threads([&](int id) {
    SeededRandom random(static_cast<std::uint64_t>(id) + 7);
    for (int i = 0; i < 20000; ++i) {
      if (id == 0 && i % 100 == 0) clock.advance(std::chrono::milliseconds(1));
      auto p = breaker.try_acquire(clock);
      if (!p.allowed()) continue;
      if (random.next_unit() < 0.6) {
        breaker.on_failure(p, clock);
      } else {
        breaker.on_success(p, clock);
      }
    }
  });
  // 60 % failures over windows of 100 calls: it must have opened, and it must have closed
  // again after probes (the failure rate of 10 probes is often below 50 %).
  CircuitSnapshot s = breaker.snapshot(clock);
  EXPECT_GE(s.transitions, 3u);
}

// Each thread records into a window shard of its own: with fewer threads than shards (64), no
// outcome is lost, in a count window as in a time window.
void expect_window_counts_every_call(CircuitBreakerOptions o) {
  ManualClock clock;
  o.failure_rate_threshold = 1.0;  // 10 % failures: never opens
  CircuitBreaker breaker("b", o);
  constexpr int kCalls = 20000;
  run_threads([&](int) {
    for (int i = 0; i < kCalls; ++i) {
      auto p = breaker.try_acquire(clock);
      ASSERT_TRUE(p.allowed());
      i % 10 == 0 ? breaker.on_failure(p, clock) : breaker.on_success(p, clock);
    }
  });
  const CircuitSnapshot s = breaker.snapshot(clock);
  EXPECT_EQ(s.state, CircuitState::closed);
  EXPECT_EQ(s.window_calls, kThreads * kCalls);
  EXPECT_EQ(s.window_failures, kThreads * kCalls / 10);
}

TEST(Concurrency, FailureRateCountWindowCountsEveryCall) {
  CircuitBreakerOptions o = CircuitBreakerOptions::failure_rate();
  o.window_size = 100000;
  expect_window_counts_every_call(o);
}

TEST(Concurrency, FailureRateTimeWindowCountsEveryCall) {
  CircuitBreakerOptions o = CircuitBreakerOptions::failure_rate();
  o.window = WindowKind::time;
  expect_window_counts_every_call(o);
}

TEST(Concurrency, RetryBudgetSpendsAboutItsAllowance) {
  ManualClock clock;
  RetryBudget budget({.min_retries_per_second = 0});
  std::atomic<int> granted{0};
  run_threads([&](int id) {
    SeededRandom random(static_cast<std::uint64_t>(id) + 11);
    for (int i = 0; i < 20000; ++i) {
      random.next_unit() < 0.2 ? budget.record_failure() : budget.record_success();
      if (budget.try_acquire_retry(RetryCost::plain, clock.now())) {
        granted.fetch_add(1);
        budget.release_retry();
      }
    }
  });
  // Every thread on its own stripe: nothing lost but by stripes shared (the threads outnumber
  // the stripes only when kThreads > 8), and the spending is what the window allows, give or
  // take the retries decided at the same instant (one per thread at most).
  const RetryBudget::Reading r = budget.reading(clock.now());
  EXPECT_LE(r.calls, static_cast<std::uint64_t>(kThreads) * 20000);
  EXPECT_GE(r.calls, static_cast<std::uint64_t>(kThreads) * 20000 * 9 / 10);
  EXPECT_EQ(r.retries, static_cast<std::uint64_t>(granted.load()));
  EXPECT_LE(r.spent, r.allowance + kThreads);
  EXPECT_GE(r.spent, r.allowance - 1 - kThreads);
  EXPECT_EQ(budget.retries_in_flight(), 0);
}

TEST(Concurrency, RetryBudgetFloorAdmitsExactlyItsRetriesAtOnce) {
  ManualClock clock;
  // Nothing allowed by the window: only the in-flight floor admits.
  RetryBudget budget({.ratio = 0, .min_retries_per_second = 0, .min_retries_in_flight = 2});
  std::atomic<int> granted{0};
  std::barrier holding(kThreads);
  run_threads([&](int) {
    const bool got = budget.try_acquire_retry(RetryCost::plain, clock.now());
    granted += got;
    holding.arrive_and_wait();  // everyone has asked while the winners still hold theirs
    if (got) budget.release_retry();
  });
  EXPECT_EQ(granted.load(), 2);
  EXPECT_EQ(budget.retries_in_flight(), 0);
}

TEST(Concurrency, RateLimiterGrantsExactlyTheBurstAtOneInstant) {
  ManualClock clock;
  RateLimiter limiter("r", {.rate_per_second = 1, .burst = 100});
  std::atomic<int> granted{0};
  run_threads([&](int) {
    for (int i = 0; i < 1000; ++i) granted += limiter.try_acquire(clock.now()).allowed;
  });
  EXPECT_EQ(granted.load(), 100);
}

TEST(Concurrency, BulkheadNeverExceedsItsCapacity) {
  Bulkhead bulkhead(
      "b", {.max_concurrent = 2, .max_queue = kThreads, .max_wait = std::chrono::minutes(1)});
  std::atomic<int> inside{0};
  std::atomic<int> most{0};
  run_threads([&](int) {
    for (int i = 0; i < 2000; ++i) {
      ASSERT_EQ(bulkhead.enter({}), Bulkhead::Admission::admitted);
      const int now = inside.fetch_add(1) + 1;
      int seen = most.load();
      while (now > seen && !most.compare_exchange_weak(seen, now)) {
      }
      inside.fetch_sub(1);
      bulkhead.leave();
    }
  });
  EXPECT_LE(most.load(), 2);
  EXPECT_EQ(bulkhead.in_use(), 0);
}

TEST(Concurrency, CoarseClockReadersStayCloseToThePreciseClock) {
  const SystemClock& clock = SystemClock::instance();
  std::atomic<int> far_off{0};
  run_threads([&](int) {
    for (int i = 0; i < 20000; ++i) {
      const TimePoint coarse = clock.coarse_now();
      const TimePoint precise = clock.now();
      // The ticker refreshes every millisecond; allow for a loaded machine (and TSan).
      if (precise - coarse > std::chrono::milliseconds(250) ||
          coarse - precise > std::chrono::milliseconds(1)) {
        far_off.fetch_add(1);
      }
    }
  });
  EXPECT_EQ(far_off.load(), 0);
}

TEST(Concurrency, OnePipelineSharedByManyThreads) {
  ManualClock clock;
  ManualSleeper sleeper(clock);
  SeededRandom random(5);
  RecordingEventSink events;
  Env env = Env::system();
  env.clock = &clock;
  env.sleeper = &sleeper;
  env.random = &random;
  env.events = &events;
  auto breaker = std::make_shared<CircuitBreaker>("agent", CircuitBreakerOptions{});
  RetryOptions retry;
  retry.budget = std::make_shared<RetryBudget>();
  Pipeline p = Pipeline::Builder().env(env).retry(retry).circuit_breaker(breaker).build();
  std::atomic<int> ok{0}, failed{0};
  run_threads([&](int id) {
    SeededRandom local(static_cast<std::uint64_t>(id) + 3);
    for (int i = 0; i < 2000; ++i) {
      Result<int> r = p.try_execute([&]() -> Result<int> {
        if (local.next_unit() < 0.2) return Error::http(503);
        return 1;
      });
      r.ok() ? ++ok : ++failed;
    }
  });
  EXPECT_EQ(ok.load() + failed.load(), kThreads * 2000);
  EXPECT_GT(ok.load(), 0);
  EXPECT_EQ(retry.budget->retries_in_flight(), 0);
}

}  // namespace
}  // namespace mend
