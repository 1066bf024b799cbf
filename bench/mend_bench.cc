// mend_bench: what mend costs on the success path, in ns per successful call.
//
// Every benchmark calls the same out-of-line function, work(), once per iteration, so the
// difference from BM_BareCall is what the policy around it costs:
//
//   BM_BareCall                      work() alone: the baseline
//   BM_BreakerAlone_Consecutive      CircuitBreaker (consecutive mode), used directly:
//                                    try_acquire / work / on_success
//   BM_BreakerAlone_FailureRate      the same, CircuitBreakerOptions::failure_rate() (a count
//                                    window of 100 calls)
//   BM_BreakerAlone_FailureRateTime  the same with a time window (60 s in 10 buckets)
//   BM_RetryAlone                    Pipeline with a retry stage only, execute()
//   BM_Pipeline_Consecutive          retry (with a RetryBudget) -> consecutive breaker, execute()
//   BM_Pipeline_FailureRate          the same with a failure-rate breaker (count window)
//   BM_Pipeline_FailureRateTime      the same with a failure-rate breaker on a time window
//   BM_Pipeline_Consecutive_Result   as BM_Pipeline_Consecutive, callable returns
//                                    mend::Result<int>, try_execute()
//
// The library comparison of issue 6 (bench/library.py runs these next to cockatiel, opossum and
// tenacity; the peers' scripts are in bench/lib/):
//   BM_Lib_Success             retry (3 retries, zero backoff, a RetryBudget that never runs out)
//                              -> consecutive breaker, execute(); every call succeeds
//   BM_Lib_Transient30         the same pipeline; attempt i of the thread fails when i % 10 is
//                              1, 4 or 7 (30 % of attempts, never two in a row), by throwing a
//                              prebuilt mend::Exception classified temporary_unavailable, so
//                              every call succeeds after at most one retry and the breaker
//                              never opens
//   BM_Lib_Transient30_Result  the same, callable returns mend::Result<int> with the transient
//                              error, try_execute()
//
// Every call succeeds: the breakers stay closed and no retry ever runs. Shared objects (breakers,
// budget, pipelines) are created once and shared by all threads, as a service would share them.
// Benchmarks marked so also run on 2 threads; all use real time, so items_per_second is the
// aggregate throughput of all threads.
//
// The targets (checked by bench/compare.py, on one thread unless stated; ns per call
// and per thread, over BM_BareCall on as many threads):
//   - full consecutive pipeline (BM_Pipeline_Consecutive) <= 3 ns over BM_BareCall
//   - failure-rate pipelines (BM_Pipeline_FailureRate, BM_Pipeline_FailureRateTime), on 1 and
//     on 2 threads                                        <= 15 ns over BM_BareCall
//   - consecutive breaker (BM_BreakerAlone_Consecutive): 2-thread throughput >= 1.7x 1-thread
//     (the closed, failure-free path makes no shared write)
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <utility>

#include "mend/core/circuit_breaker.h"
#include "mend/core/clock.h"
#include "mend/core/error.h"
#include "mend/core/pipeline.h"
#include "mend/core/result.h"
#include "mend/core/retry.h"
#include "mend/core/retry_budget.h"
#include "mend/core/system_clock.h"

namespace {

// The protected call. noipa as well as noinline, so that GCC cannot see that it is pure and
// hoist it out of the loop. It touches no shared memory.
[[gnu::noinline, gnu::noipa]] int work(int x) {
  return x * 2 + 1;
}

// Shared objects: function-local statics, constructed once (thread-safely) and shared by every
// thread of every run.
mend::CircuitBreaker& consecutive_breaker() {
  static mend::CircuitBreaker breaker("bench-consecutive", mend::CircuitBreakerOptions{});
  return breaker;
}

mend::CircuitBreaker& failure_rate_breaker() {
  static mend::CircuitBreaker breaker("bench-failure-rate",
                                      mend::CircuitBreakerOptions::failure_rate());
  return breaker;
}

// Failure-rate mode on a time window: 60 s in 10 buckets of 6 s.
mend::CircuitBreakerOptions failure_rate_time_options() {
  mend::CircuitBreakerOptions o = mend::CircuitBreakerOptions::failure_rate();
  o.window = mend::WindowKind::time;
  o.window_duration = std::chrono::seconds(60);
  o.window_buckets = 10;
  return o;
}

mend::CircuitBreaker& failure_rate_time_breaker() {
  static mend::CircuitBreaker breaker("bench-failure-rate-time", failure_rate_time_options());
  return breaker;
}

const mend::Pipeline& retry_pipeline() {
  static const mend::Pipeline pipeline =
      mend::Pipeline::Builder().retry(mend::RetryOptions{}).build();
  return pipeline;
}

mend::Pipeline make_full_pipeline(const char* name, mend::CircuitBreakerOptions breaker_options) {
  mend::RetryOptions retry;
  retry.budget = std::make_shared<mend::RetryBudget>(mend::RetryBudgetOptions{});
  return mend::Pipeline::Builder()
      .retry(std::move(retry))
      .circuit_breaker(std::make_shared<mend::CircuitBreaker>(name, std::move(breaker_options)))
      .build();
}

const mend::Pipeline& consecutive_pipeline() {
  static const mend::Pipeline pipeline =
      make_full_pipeline("bench-pipeline-consecutive", mend::CircuitBreakerOptions{});
  return pipeline;
}

const mend::Pipeline& failure_rate_pipeline() {
  static const mend::Pipeline pipeline = make_full_pipeline(
      "bench-pipeline-failure-rate", mend::CircuitBreakerOptions::failure_rate());
  return pipeline;
}

const mend::Pipeline& failure_rate_time_pipeline() {
  static const mend::Pipeline pipeline =
      make_full_pipeline("bench-pipeline-failure-rate-time", failure_rate_time_options());
  return pipeline;
}

// A per-thread argument the optimizer cannot treat as a constant.
int opaque_arg(const benchmark::State& state) {
  int x = state.thread_index();
  benchmark::DoNotOptimize(x);
  return x;
}

void BM_BareCall(benchmark::State& state) {
  int x = opaque_arg(state);
  for (auto _ : state) {
    benchmark::DoNotOptimize(x);
    benchmark::DoNotOptimize(work(x));
  }
  state.SetItemsProcessed(state.iterations());
}

void breaker_alone(benchmark::State& state, mend::CircuitBreaker& breaker) {
  const mend::Clock& clock = mend::SystemClock::instance();
  int x = opaque_arg(state);
  for (auto _ : state) {
    benchmark::DoNotOptimize(x);
    const mend::CircuitBreaker::Permit permit = breaker.try_acquire(clock);
    if (!permit.allowed()) [[unlikely]] {
      state.SkipWithError("circuit not closed");
      break;
    }
    benchmark::DoNotOptimize(work(x));
    breaker.on_success(permit, clock);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_BreakerAlone_Consecutive(benchmark::State& state) {
  breaker_alone(state, consecutive_breaker());
}

void BM_BreakerAlone_FailureRate(benchmark::State& state) {
  breaker_alone(state, failure_rate_breaker());
}

void BM_BreakerAlone_FailureRateTime(benchmark::State& state) {
  breaker_alone(state, failure_rate_time_breaker());
}

void pipeline_execute(benchmark::State& state, const mend::Pipeline& pipeline) {
  int x = opaque_arg(state);
  for (auto _ : state) {
    benchmark::DoNotOptimize(x);
    benchmark::DoNotOptimize(pipeline.execute([&] { return work(x); }));
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_RetryAlone(benchmark::State& state) {
  pipeline_execute(state, retry_pipeline());
}

void BM_Pipeline_Consecutive(benchmark::State& state) {
  pipeline_execute(state, consecutive_pipeline());
}

void BM_Pipeline_FailureRate(benchmark::State& state) {
  pipeline_execute(state, failure_rate_pipeline());
}

void BM_Pipeline_FailureRateTime(benchmark::State& state) {
  pipeline_execute(state, failure_rate_time_pipeline());
}

void BM_Pipeline_Consecutive_Result(benchmark::State& state) {
  const mend::Pipeline& pipeline = consecutive_pipeline();
  int x = opaque_arg(state);
  for (auto _ : state) {
    benchmark::DoNotOptimize(x);
    mend::Result<int> r = pipeline.try_execute([&]() -> mend::Result<int> { return work(x); });
    if (!r.ok()) [[unlikely]] {
      state.SkipWithError("call failed");
      break;
    }
    benchmark::DoNotOptimize(*r);
  }
  state.SetItemsProcessed(state.iterations());
}

// --- Library comparison (issue 6) ------------------------------------------------------------

// Retry with 3 retries (4 attempts at most) and no wait: the backoff is constant at zero, and
// SystemSleeper returns at once for a zero delay. The budget (its defaults) allows half a retry
// per request: 3 failures in 10 never exhaust it, but it is on the path.
// Then the default consecutive breaker (5 failures open it).
const mend::Pipeline& lib_pipeline() {
  static const mend::Pipeline pipeline = [] {
    mend::RetryOptions retry;
    retry.max_retries = 3;
    retry.backoff.kind = mend::BackoffKind::constant;
    retry.backoff.base = mend::Duration::zero();
    retry.backoff.cap = mend::Duration::zero();
    retry.budget = std::make_shared<mend::RetryBudget>(mend::RetryBudgetOptions{});
    return mend::Pipeline::Builder()
        .retry(std::move(retry))
        .circuit_breaker(
            std::make_shared<mend::CircuitBreaker>("bench-lib", mend::CircuitBreakerOptions{}))
        .build();
  }();
  return pipeline;
}

// The deterministic failure pattern shared with the peers' scripts: attempt i of this thread
// fails when i % 10 is 1, 4 or 7.
thread_local std::uint64_t lib_attempts = 0;
thread_local std::uint64_t lib_failures = 0;

bool lib_attempt_fails() {
  const std::uint64_t i = lib_attempts++;
  const std::uint64_t r = i % 10;
  const bool fail = r == 1 || r == 4 || r == 7;
  lib_failures += fail ? 1 : 0;
  return fail;
}

// The transient failure, built once and thrown again each time, so that what is measured is the
// policies' handling of it, not building an error (the peers' scripts do the same).
const std::exception_ptr& lib_transient_exception() {
  static const std::exception_ptr e =
      std::make_exception_ptr(mend::Exception(mend::Error::classified_as(
          mend::ErrorType::temporary_unavailable, mend::Severity::medium, "transient")));
  return e;
}

// Counters that show the retry path ran: attempts per call (10/7 = 1.43 with the pattern) and
// the share of calls that needed a retry (3/7 = 42.9 %: every failure is retried once, and
// succeeds).
void lib_counters(benchmark::State& state, std::uint64_t attempts0, std::uint64_t failures0) {
  const double calls = static_cast<double>(state.iterations());
  if (calls == 0) return;
  state.counters["attempts_per_call"] = static_cast<double>(lib_attempts - attempts0) / calls;
  state.counters["retried_pct"] = 100.0 * static_cast<double>(lib_failures - failures0) / calls;
  state.SetItemsProcessed(state.iterations());
}

// Before timing: one call in ten with a CallReport, as a check that the pipeline itself reports
// the retries (the attempt counter then carries on from where the check left it).
bool lib_check_reports(benchmark::State& state) {
  const mend::Pipeline& pipeline = lib_pipeline();
  lib_attempts = (lib_attempts + 9) / 10 * 10;  // start the pattern at its beginning
  int retried = 0;
  for (int n = 0; n < 70; ++n) {
    mend::CallReport report;
    mend::CallOptions options;
    options.report = &report;
    mend::Result<int> r = pipeline.try_execute(
        [&]() -> int {
          if (lib_attempt_fails()) std::rethrow_exception(lib_transient_exception());
          return work(n);
        },
        options);
    if (!r.ok()) {
      state.SkipWithError("a call failed in the CallReport check");
      return false;
    }
    retried += report.attempts > 1 ? 1 : 0;
  }
  if (retried != 30) {
    state.SkipWithError("CallReport check: expected 30 of 70 calls to retry");
    return false;
  }
  return true;
}

void BM_Lib_Success(benchmark::State& state) {
  const mend::Pipeline& pipeline = lib_pipeline();
  int x = opaque_arg(state);
  const std::uint64_t a0 = lib_attempts, f0 = lib_failures;
  for (auto _ : state) {
    benchmark::DoNotOptimize(x);
    benchmark::DoNotOptimize(pipeline.execute([&] {
      ++lib_attempts;
      return work(x);
    }));
  }
  lib_counters(state, a0, f0);
}

void BM_Lib_Transient30(benchmark::State& state) {
  const mend::Pipeline& pipeline = lib_pipeline();
  if (!lib_check_reports(state)) return;
  int x = opaque_arg(state);
  const std::uint64_t a0 = lib_attempts, f0 = lib_failures;
  try {
    for (auto _ : state) {
      benchmark::DoNotOptimize(x);
      benchmark::DoNotOptimize(pipeline.execute([&] {
        if (lib_attempt_fails()) std::rethrow_exception(lib_transient_exception());
        return work(x);
      }));
    }
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }
  lib_counters(state, a0, f0);
}

void BM_Lib_Transient30_Result(benchmark::State& state) {
  const mend::Pipeline& pipeline = lib_pipeline();
  if (!lib_check_reports(state)) return;
  int x = opaque_arg(state);
  const std::uint64_t a0 = lib_attempts, f0 = lib_failures;
  for (auto _ : state) {
    benchmark::DoNotOptimize(x);
    mend::Result<int> r = pipeline.try_execute([&]() -> mend::Result<int> {
      if (lib_attempt_fails()) {
        return mend::Error::classified_as(mend::ErrorType::temporary_unavailable,
                                          mend::Severity::medium);
      }
      return work(x);
    });
    if (!r.ok()) [[unlikely]] {
      state.SkipWithError("call failed");
      return;
    }
    benchmark::DoNotOptimize(*r);
  }
  lib_counters(state, a0, f0);
}

}  // namespace

BENCHMARK(BM_BareCall)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_BreakerAlone_Consecutive)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_BreakerAlone_FailureRate)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_BreakerAlone_FailureRateTime)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_RetryAlone)->UseRealTime();
BENCHMARK(BM_Pipeline_Consecutive)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_Pipeline_FailureRate)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_Pipeline_FailureRateTime)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_Pipeline_Consecutive_Result)->UseRealTime();
BENCHMARK(BM_Lib_Success)->UseRealTime();
BENCHMARK(BM_Lib_Transient30)->UseRealTime();
BENCHMARK(BM_Lib_Transient30_Result)->UseRealTime();

BENCHMARK_MAIN();
