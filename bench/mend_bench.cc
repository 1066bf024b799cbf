// mend_bench: what mend costs on the success path, in ns per successful call.
//
// Every benchmark calls the same out-of-line function, work(), once per iteration, so the
// difference from BM_BareCall is what the policy around it costs:
//
//   BM_BareCall                      work() alone: the baseline
//   BM_BreakerAlone_Consecutive      CircuitBreaker (consecutive mode), used directly:
//                                    try_acquire / work / on_success
//   BM_BreakerAlone_FailureRate      the same, CircuitBreakerOptions::failure_rate()
//   BM_RetryAlone                    Pipeline with a retry stage only, execute()
//   BM_Pipeline_Consecutive          retry (with a RetryBudget) -> consecutive breaker, execute()
//   BM_Pipeline_FailureRate          the same with a failure-rate breaker
//   BM_Pipeline_Consecutive_Result   as BM_Pipeline_Consecutive, callable returns
//                                    mend::Result<int>, try_execute()
//
// Every call succeeds: the breakers stay closed and no retry ever runs. Shared objects (breakers,
// budget, pipelines) are created once and shared by all threads, as a service would share them.
// Benchmarks marked so also run on 2 threads; all use real time, so items_per_second is the
// aggregate throughput of all threads.
//
// The targets (checked by bench/compare.py, on one thread unless stated):
//   - full consecutive pipeline (BM_Pipeline_Consecutive) <= 3 ns over BM_BareCall
//   - failure-rate pipeline (BM_Pipeline_FailureRate)     <= 15 ns over BM_BareCall
//   - consecutive breaker (BM_BreakerAlone_Consecutive): 2-thread throughput >= 1.7x 1-thread
//     (the closed, failure-free path makes no shared write)
#include <benchmark/benchmark.h>

#include <memory>
#include <utility>

#include "mend/circuit_breaker.h"
#include "mend/clock.h"
#include "mend/pipeline.h"
#include "mend/result.h"
#include "mend/retry.h"
#include "mend/retry_budget.h"

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

}  // namespace

BENCHMARK(BM_BareCall)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_BreakerAlone_Consecutive)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_BreakerAlone_FailureRate)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_RetryAlone)->UseRealTime();
BENCHMARK(BM_Pipeline_Consecutive)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_Pipeline_FailureRate)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_Pipeline_Consecutive_Result)->UseRealTime();

BENCHMARK_MAIN();
