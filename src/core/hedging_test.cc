// Hedging's policy on a manual clock: which task types are hedged, the delay (fixed, or the
// observed p95 clamped to [min_delay, max_delay], max_delay until the estimate is trusted), and
// the latency estimator's buckets and sliding window. Samples are drawn from a seeded source.
#include "mend/core/hedging.h"

#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "mend/core/clock.h"
#include "mend/core/random.h"

namespace mend {
namespace {

using namespace std::chrono_literals;

TEST(LatencyQuantileTest, BucketsAreLogSpacedAndHoldTheirBound) {
  EXPECT_EQ(LatencyQuantile::bucket_of(Duration::zero()), 0);
  EXPECT_EQ(LatencyQuantile::bucket_of(100us), 0);
  EXPECT_EQ(LatencyQuantile::bucket_of(101us), 1);
  EXPECT_EQ(LatencyQuantile::upper_bound(1), 120us);
  for (int i = 0; i + 2 < LatencyQuantile::kBuckets; ++i) {
    const Duration bound = LatencyQuantile::upper_bound(i);
    EXPECT_EQ(LatencyQuantile::bucket_of(bound), i) << i;
    EXPECT_EQ(LatencyQuantile::bucket_of(bound + 1ns), i + 1) << i;
    // Each 20 % wider than the one before (within the rounding to a nanosecond).
    const double ratio = static_cast<double>(LatencyQuantile::upper_bound(i + 1).count()) /
                         static_cast<double>(bound.count());
    EXPECT_NEAR(ratio, 1.2, 1e-5) << i;
  }
  EXPECT_EQ(LatencyQuantile::bucket_of(24h), LatencyQuantile::kBuckets - 1);
  EXPECT_EQ(LatencyQuantile::upper_bound(LatencyQuantile::kBuckets - 1), Duration::max());
}

TEST(LatencyQuantileTest, NoEstimateBelowTheMinimumOfSamples) {
  ManualClock clock;
  LatencyQuantile q(60s, 20);
  for (int i = 0; i < 19; ++i) q.record(10ms, clock.now());
  EXPECT_EQ(q.quantile(0.95, clock.now()), std::nullopt);
  q.record(10ms, clock.now());
  ASSERT_TRUE(q.quantile(0.95, clock.now()).has_value());
  EXPECT_EQ(q.samples(clock.now()), 20u);
}

TEST(LatencyQuantileTest, TheP95OfUniformSamplesIsWithinABucketAbove) {
  ManualClock clock;
  SeededRandom random(17);
  LatencyQuantile q(60s, 20);
  std::vector<Duration> samples;
  for (int i = 0; i < 10000; ++i) {
    // Uniform over [10 ms, 110 ms): the p95 is 105 ms.
    const Duration d = 10ms + std::chrono::duration_cast<Duration>(random.next_unit() * 100ms);
    q.record(d, clock.now());
  }
  const Duration p95 = *q.quantile(0.95, clock.now());
  EXPECT_GE(p95, 104ms);
  EXPECT_LE(p95, 105ms * 1.2);
  const Duration p50 = *q.quantile(0.5, clock.now());
  EXPECT_GE(p50, 59ms);
  EXPECT_LE(p50, 60ms * 1.2);
}

TEST(LatencyQuantileTest, TheSlowTailIsWhatTheP95Sees) {
  ManualClock clock;
  LatencyQuantile q(60s, 20);
  // 90 fast answers and 10 answers of 1 s: the p95 is the slow one.
  for (int i = 0; i < 90; ++i) q.record(5ms, clock.now());
  for (int i = 0; i < 10; ++i) q.record(1s, clock.now());
  EXPECT_GE(*q.quantile(0.95, clock.now()), 1s);
  EXPECT_LE(*q.quantile(0.89, clock.now()), 6ms);
}

TEST(LatencyQuantileTest, OldSamplesLeaveTheWindow) {
  ManualClock clock;
  LatencyQuantile q(60s, 20);
  for (int i = 0; i < 50; ++i) q.record(1s, clock.now());
  clock.advance(31s);  // the next half: the first one's samples are still read
  for (int i = 0; i < 50; ++i) q.record(10ms, clock.now());
  EXPECT_EQ(q.samples(clock.now()), 100u);
  EXPECT_GE(*q.quantile(0.95, clock.now()), 1s);
  clock.advance(30s);  // the first half has left the window
  EXPECT_EQ(q.samples(clock.now()), 50u);
  EXPECT_LE(*q.quantile(0.95, clock.now()), 12ms);
  clock.advance(2min);  // all of it
  EXPECT_EQ(q.samples(clock.now()), 0u);
  EXPECT_EQ(q.quantile(0.95, clock.now()), std::nullopt);
}

TEST(LatencyQuantileTest, IsSafeFromManyThreads) {
  ManualClock clock;
  LatencyQuantile q(60s, 1);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) {
        q.record(1ms, clock.now());
        (void)q.quantile(0.95, clock.now());
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(q.samples(clock.now()), 4000u);
}

TEST(HedgingPolicyTest, HedgesOnlyTheListedTaskTypes) {
  HedgingOptions o;
  EXPECT_FALSE(HedgingPolicy(o).hedges("code_review"));  // none by default
  o.task_types = {"code_review", "ai_analysis"};
  HedgingPolicy listed(o);
  EXPECT_TRUE(listed.hedges("code_review"));
  EXPECT_TRUE(listed.hedges("ai_analysis"));
  EXPECT_FALSE(listed.hedges("deployment"));
  EXPECT_FALSE(listed.hedges(""));
  o.task_types = {"*"};
  HedgingPolicy all(o);
  EXPECT_TRUE(all.hedges("deployment"));
  EXPECT_TRUE(all.hedges(""));  // a request without a task type too
}

TEST(HedgingPolicyTest, AFixedDelayIsUsedAsItIs) {
  ManualClock clock;
  HedgingOptions o;
  o.delay = 50ms;
  o.min_delay = 100ms;  // for the p95 only
  HedgingPolicy h(o);
  EXPECT_EQ(h.delay(clock.now()), 50ms);
  for (int i = 0; i < 100; ++i) h.record(1s, clock.now());
  EXPECT_EQ(h.delay(clock.now()), 50ms);
  EXPECT_EQ(h.latencies().samples(clock.now()), 0u);  // nothing kept
}

TEST(HedgingPolicyTest, TheP95DelayIsMaxDelayUntilTrustedThenTheObservedP95) {
  ManualClock clock;
  HedgingOptions o;  // p95, 10 ms .. 2 s, 20 samples
  HedgingPolicy h(o);
  EXPECT_EQ(h.delay(clock.now()), 2s);
  for (int i = 0; i < 19; ++i) h.record(40ms, clock.now());
  EXPECT_EQ(h.delay(clock.now()), 2s);
  h.record(40ms, clock.now());
  const Duration d = h.delay(clock.now()).value();
  EXPECT_GE(d, 40ms);
  EXPECT_LE(d, 48ms);
  // A fast agent: never under min_delay.
  HedgingPolicy fast(o);
  for (int i = 0; i < 100; ++i) fast.record(200us, clock.now());
  EXPECT_EQ(fast.delay(clock.now()), 10ms);
  // An agent slower than max_delay as a whole: no hedge (a second call would only add load).
  HedgingPolicy slow(o);
  for (int i = 0; i < 100; ++i) slow.record(3s, clock.now());
  EXPECT_EQ(slow.delay(clock.now()), std::nullopt);
  // Its p95 back under max_delay (the slow answers left the window): hedged again.
  clock.advance(61s);
  for (int i = 0; i < 100; ++i) slow.record(1s, clock.now());
  const std::optional<Duration> back = slow.delay(clock.now());
  ASSERT_TRUE(back.has_value());
  EXPECT_GE(*back, 1s);
  EXPECT_LE(*back, 1200ms);
}

TEST(HedgingPolicyTest, OptionsOutOfRangeAreRefusedByName) {
  auto refused = [](auto change, const std::string& name) {
    HedgingOptions o;
    change(o);
    try {
      HedgingPolicy h(o);
      ADD_FAILURE() << name << " accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
  };
  refused([](HedgingOptions& o) { o.delay = 0ms; }, "delay");
  refused([](HedgingOptions& o) { o.quantile = 1; }, "quantile");
  refused([](HedgingOptions& o) { o.min_delay = -1ms; }, "min_delay");
  refused([](HedgingOptions& o) { o.max_delay = 0ms; }, "max_delay");
  refused([](HedgingOptions& o) { o.min_delay = 3s; }, "min_delay");
  refused([](HedgingOptions& o) { o.window = 0s; }, "window");
  refused([](HedgingOptions& o) { o.min_samples = 0; }, "min_samples");
}

}  // namespace
}  // namespace mend
