// The replica scaler on a manual clock: saturation starts one replica at a time within the
// limits and the cooldown, low load retires one after the scale-down delay, a replica that is
// never ready is given up, and only news is reported.
#include "mend/core/replica_scaler.h"

#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>
#include <string>

namespace mend {
namespace {

using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;
using A = ScalingAction;

ReplicaScalerOptions one_to(int max) {
  ReplicaScalerOptions o;
  o.min_replicas = 1;
  o.max_replicas = max;
  return o;
}

ScalingSignals rejected(std::uint64_t n) {
  return {.rejected = n};
}
ScalingSignals quiet() {
  return {};
}

// Scales up and makes the new replica ready at once.
void scale_up_ready(ReplicaScaler& scaler, ManualClock& clock) {
  ASSERT_EQ(scaler.observe(rejected(1), clock.now()).action, A::scale_up);
  scaler.replica_ready(clock.now());
}

TEST(ReplicaScalerOptions, DefaultsAreOneReplicaThirtySecondCooldownFiveMinuteScaleDown) {
  ReplicaScalerOptions o;
  EXPECT_EQ(o.min_replicas, 1);
  EXPECT_EQ(o.max_replicas, 1);
  EXPECT_EQ(o.replica_capacity, 0);
  EXPECT_EQ(o.latency_threshold, Duration::zero());
  EXPECT_EQ(o.scale_up_cooldown, seconds(30));
  EXPECT_EQ(o.scale_down_delay, minutes(5));
  EXPECT_DOUBLE_EQ(o.scale_down_utilisation, 0.3);
  EXPECT_EQ(o.start_timeout, seconds(60));
}

TEST(ReplicaScalerOptions, OutOfRangeOptionsAreRefusedNamingTheField) {
  auto refused = [](ReplicaScalerOptions o, const std::string& field) {
    try {
      ReplicaScaler scaler(o, 1);
      ADD_FAILURE() << field << " was accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    }
  };
  ReplicaScalerOptions o = one_to(2);
  o.min_replicas = 0;
  refused(o, "min_replicas");
  o = one_to(2);
  o.min_replicas = 3;
  refused(o, "max_replicas");
  o = one_to(2);
  o.replica_capacity = -1;
  refused(o, "replica_capacity");
  o = one_to(2);
  o.scale_up_cooldown = seconds(-1);
  refused(o, "scale_up_cooldown");
  o = one_to(2);
  o.scale_down_delay = seconds(-1);
  refused(o, "scale_down_delay");
  o = one_to(2);
  o.scale_down_utilisation = 1.0;
  refused(o, "scale_down_utilisation");
  o = one_to(2);
  o.start_timeout = Duration::zero();
  refused(o, "start_timeout");
  o = one_to(2);
  o.latency_threshold = milliseconds(-5);
  refused(o, "latency_threshold");
}

TEST(ReplicaScaler, QuietLoadHoldsAndReportsNothing) {
  ManualClock clock;
  ReplicaScaler scaler(one_to(4), 1);
  for (int i = 0; i < 100; ++i) {
    ScalingDecision d = scaler.observe(quiet(), clock.now());
    EXPECT_EQ(d.action, A::hold);
    EXPECT_FALSE(d.report);
    EXPECT_FALSE(d.saturated);
    EXPECT_TRUE(d.low);
    EXPECT_EQ(d.replicas, 1);
    clock.advance(seconds(10));
  }
}

TEST(ReplicaScaler, RefusedCallsScaleUpByOneAndTheReplicaCountsOnceReady) {
  ManualClock clock;
  ReplicaScaler scaler(one_to(4), 1);
  ScalingDecision d = scaler.observe(rejected(3), clock.now());
  EXPECT_EQ(d.action, A::scale_up);
  EXPECT_TRUE(d.report);
  EXPECT_TRUE(d.saturated);
  EXPECT_EQ(d.replicas, 2);
  EXPECT_EQ(d.reason,
            "saturated: 3 calls refused for want of capacity; scaling up from 1 to 2 replicas");
  EXPECT_TRUE(scaler.starting());
  EXPECT_EQ(scaler.replicas(), 1);  // not in service before it is ready
  clock.advance(seconds(2));
  scaler.replica_ready(clock.now());
  EXPECT_FALSE(scaler.starting());
  EXPECT_EQ(scaler.replicas(), 2);
}

TEST(ReplicaScaler, PoolExhaustionAndLatencyAndFullReplicasAreSaturation) {
  ManualClock clock;
  ReplicaScalerOptions o = one_to(4);
  o.latency_threshold = milliseconds(100);
  o.replica_capacity = 4;

  ReplicaScaler pool(o, 1);
  ScalingDecision d = pool.observe({.pool_exhausted = 1}, clock.now());
  EXPECT_EQ(d.action, A::scale_up);
  EXPECT_EQ(d.reason,
            "saturated: 1 connection_pool_exhausted error; scaling up from 1 to 2 replicas");

  ReplicaScaler slow(o, 1);
  d = slow.observe({.latency = milliseconds(310)}, clock.now());
  EXPECT_EQ(d.action, A::scale_up);
  EXPECT_EQ(d.reason,
            "saturated: mean latency 310 ms over the 100 ms threshold; scaling up from 1 to 2 "
            "replicas");
  // At the threshold is not over it.
  ReplicaScaler at(o, 1);
  EXPECT_EQ(at.observe({.latency = milliseconds(100)}, clock.now()).action, A::hold);

  ReplicaScaler full(o, 2);
  EXPECT_EQ(full.observe({.in_flight = 7}, clock.now()).action, A::hold);
  d = full.observe({.in_flight = 8}, clock.now());
  EXPECT_EQ(d.action, A::scale_up);
  EXPECT_EQ(d.reason,
            "saturated: 8 calls in flight fill 2 replicas of 4; scaling up from 2 to 3 replicas");
}

TEST(ReplicaScaler, LatencyIsNoSignalWithoutAThreshold) {
  ManualClock clock;
  ReplicaScaler scaler(one_to(4), 1);
  EXPECT_EQ(scaler.observe({.latency = seconds(30)}, clock.now()).action, A::hold);
}

TEST(ReplicaScaler, OneReplicaStartsAtATimeAndTheHoldIsReportedOnce) {
  ManualClock clock;
  ReplicaScaler scaler(one_to(4), 1);
  ASSERT_EQ(scaler.observe(rejected(1), clock.now()).action, A::scale_up);
  int reported = 0;
  for (int i = 0; i < 10; ++i) {
    clock.advance(seconds(1));
    ScalingDecision d = scaler.observe(rejected(5), clock.now());
    EXPECT_EQ(d.action, A::hold);
    EXPECT_EQ(d.held, ScalingHold::starting);
    EXPECT_EQ(d.replicas, 1);
    reported += d.report ? 1 : 0;
  }
  EXPECT_EQ(reported, 1);
}

TEST(ReplicaScaler, TheNextScaleUpWaitsForTheCooldownAfterTheReplicaIsReady) {
  ManualClock clock;
  ReplicaScalerOptions o = one_to(4);
  o.scale_up_cooldown = seconds(30);
  ReplicaScaler scaler(o, 1);
  ASSERT_EQ(scaler.observe(rejected(1), clock.now()).action, A::scale_up);
  clock.advance(seconds(5));
  scaler.replica_ready(clock.now());  // the cooldown runs from here
  clock.advance(seconds(29));
  ScalingDecision d = scaler.observe(rejected(1), clock.now());
  EXPECT_EQ(d.action, A::hold);
  EXPECT_EQ(d.held, ScalingHold::cooldown);
  EXPECT_TRUE(d.report);
  EXPECT_EQ(d.reason,
            "saturated (1 call refused for want of capacity), but the last scale-up was 29.0 s "
            "ago (cooldown 30.0 s)");
  clock.advance(milliseconds(999));
  EXPECT_FALSE(scaler.observe(rejected(1), clock.now()).report);  // same hold: no news
  clock.advance(milliseconds(1));
  d = scaler.observe(rejected(1), clock.now());
  EXPECT_EQ(d.action, A::scale_up);
  EXPECT_EQ(d.replicas, 3);
}

TEST(ReplicaScaler, NeverAboveTheMaximum) {
  ManualClock clock;
  ReplicaScalerOptions o = one_to(3);
  o.scale_up_cooldown = Duration::zero();
  ReplicaScaler scaler(o, 1);
  int ups = 0;
  int at_max_reports = 0;
  for (int i = 0; i < 50; ++i) {
    ScalingDecision d = scaler.observe(rejected(10), clock.now());
    if (d.action == A::scale_up) {
      ++ups;
      scaler.replica_ready(clock.now());
    }
    if (d.held == ScalingHold::at_max && d.report) ++at_max_reports;
    EXPECT_LE(scaler.replicas(), 3);
    clock.advance(seconds(1));
  }
  EXPECT_EQ(ups, 2);
  EXPECT_EQ(scaler.replicas(), 3);
  EXPECT_EQ(at_max_reports, 1);
}

TEST(ReplicaScaler, LowLoadRetiresOneReplicaAfterTheDelayThenWaitsAWholeDelayAgain) {
  ManualClock clock;
  ReplicaScalerOptions o = one_to(4);
  o.scale_up_cooldown = Duration::zero();
  o.scale_down_delay = seconds(60);
  ReplicaScaler scaler(o, 1);
  scale_up_ready(scaler, clock);
  scale_up_ready(scaler, clock);
  ASSERT_EQ(scaler.replicas(), 3);

  ScalingDecision d = scaler.observe(quiet(), clock.now());  // the low period starts
  EXPECT_EQ(d.action, A::hold);
  clock.advance(seconds(59));
  EXPECT_EQ(scaler.observe(quiet(), clock.now()).action, A::hold);
  clock.advance(seconds(1));
  d = scaler.observe(quiet(), clock.now());
  EXPECT_EQ(d.action, A::scale_down);
  EXPECT_TRUE(d.report);
  EXPECT_EQ(d.replicas, 2);
  EXPECT_EQ(d.reason, "load low for 60.0 s (0 calls in flight); scaling down from 3 to 2 replicas");
  EXPECT_EQ(scaler.replicas(), 2);
  clock.advance(seconds(59));
  EXPECT_EQ(scaler.observe(quiet(), clock.now()).action, A::hold);
  clock.advance(seconds(1));
  EXPECT_EQ(scaler.observe(quiet(), clock.now()).action, A::scale_down);
  EXPECT_EQ(scaler.replicas(), 1);
  // Never below the minimum.
  for (int i = 0; i < 10; ++i) {
    clock.advance(seconds(60));
    EXPECT_EQ(scaler.observe(quiet(), clock.now()).action, A::hold);
  }
  EXPECT_EQ(scaler.replicas(), 1);
}

TEST(ReplicaScaler, AnObservationThatIsNotLowStartsTheLowPeriodOver) {
  ManualClock clock;
  ReplicaScalerOptions o;
  o.min_replicas = 1;
  o.max_replicas = 4;
  o.replica_capacity = 10;
  o.scale_down_delay = seconds(60);
  ReplicaScaler scaler(o, 2);
  // 2 x 10 capacity at 30 %: below 6 calls in flight is low.
  EXPECT_TRUE(scaler.observe({.in_flight = 5}, clock.now()).low);
  clock.advance(seconds(50));
  ScalingDecision d = scaler.observe({.in_flight = 6}, clock.now());
  EXPECT_FALSE(d.low);
  EXPECT_FALSE(d.saturated);
  clock.advance(seconds(10));
  EXPECT_EQ(scaler.observe({.in_flight = 0}, clock.now()).action, A::hold);  // starts over
  clock.advance(seconds(59));
  EXPECT_EQ(scaler.observe({.in_flight = 0}, clock.now()).action, A::hold);
  clock.advance(seconds(1));
  d = scaler.observe({.in_flight = 1}, clock.now());
  EXPECT_EQ(d.action, A::scale_down);
  EXPECT_EQ(d.reason,
            "load low for 60.0 s (1 call in flight, under 30 % of 20); scaling down from 2 to 1 "
            "replica");
}

TEST(ReplicaScaler, LatencyIsLowOnlyAtHalfItsThreshold) {
  ManualClock clock;
  ReplicaScalerOptions o = one_to(4);
  o.latency_threshold = milliseconds(100);
  o.scale_down_delay = seconds(10);
  ReplicaScaler scaler(o, 2);
  ScalingDecision d = scaler.observe({.latency = milliseconds(80)}, clock.now());
  EXPECT_FALSE(d.saturated);
  EXPECT_FALSE(d.low);
  EXPECT_TRUE(scaler.observe({.latency = milliseconds(50)}, clock.now()).low);
  clock.advance(seconds(10));
  // No call ended: no latency, which is low.
  EXPECT_EQ(scaler.observe(quiet(), clock.now()).action, A::scale_down);
}

TEST(ReplicaScaler, NeverScalesDownWhileAScaleUpIsStarting) {
  ManualClock clock;
  ReplicaScalerOptions o = one_to(4);
  o.scale_down_delay = seconds(10);
  o.start_timeout = seconds(120);
  ReplicaScaler scaler(o, 2);
  ASSERT_EQ(scaler.observe(rejected(1), clock.now()).action, A::scale_up);
  for (int i = 0; i < 11; ++i) {
    clock.advance(seconds(10));
    EXPECT_EQ(scaler.observe(quiet(), clock.now()).action, A::hold) << i;
  }
  EXPECT_EQ(scaler.replicas(), 2);
  // Ready: the low period starts over from the scale-up.
  scaler.replica_ready(clock.now());
  EXPECT_EQ(scaler.observe(quiet(), clock.now()).action, A::hold);
  clock.advance(seconds(10));
  EXPECT_EQ(scaler.observe(quiet(), clock.now()).action, A::scale_down);
  EXPECT_EQ(scaler.replicas(), 2);
}

TEST(ReplicaScaler, AReplicaNotReadyInTimeIsGivenUpAndTheCooldownRunsFromThen) {
  ManualClock clock;
  ReplicaScalerOptions o = one_to(4);
  o.start_timeout = seconds(60);
  o.scale_up_cooldown = seconds(30);
  ReplicaScaler scaler(o, 1);
  ASSERT_EQ(scaler.observe(rejected(1), clock.now()).action, A::scale_up);
  clock.advance(seconds(59));
  EXPECT_EQ(scaler.observe(rejected(1), clock.now()).held, ScalingHold::starting);
  clock.advance(seconds(1));
  ScalingDecision d = scaler.observe(rejected(1), clock.now());
  EXPECT_EQ(d.action, A::start_abandoned);
  EXPECT_TRUE(d.report);
  EXPECT_EQ(d.replicas, 1);
  EXPECT_EQ(d.reason,
            "the replica started to scale up was not ready within 60.0 s: scale-up given up, 1 "
            "replica in service");
  EXPECT_FALSE(scaler.starting());
  // Its ready, should it come late, changes nothing.
  scaler.replica_ready(clock.now());
  EXPECT_EQ(scaler.replicas(), 1);
  clock.advance(seconds(29));
  EXPECT_EQ(scaler.observe(rejected(1), clock.now()).held, ScalingHold::cooldown);
  clock.advance(seconds(1));
  EXPECT_EQ(scaler.observe(rejected(1), clock.now()).action, A::scale_up);
}

TEST(ReplicaScaler, AStartThatFailedAtOnceEndsTheScaleUpAndStartsTheCooldown) {
  ManualClock clock;
  ReplicaScalerOptions o = one_to(4);
  o.scale_up_cooldown = seconds(30);
  ReplicaScaler scaler(o, 1);
  ASSERT_EQ(scaler.observe(rejected(1), clock.now()).action, A::scale_up);
  scaler.replica_start_failed(clock.now());
  EXPECT_FALSE(scaler.starting());
  EXPECT_EQ(scaler.replicas(), 1);
  EXPECT_EQ(scaler.observe(rejected(1), clock.now()).held, ScalingHold::cooldown);
  clock.advance(seconds(30));
  EXPECT_EQ(scaler.observe(rejected(1), clock.now()).action, A::scale_up);
}

TEST(ReplicaScaler, OutsideItsLimitsItScalesBackAtOnce) {
  ManualClock clock;
  ReplicaScalerOptions o;
  o.min_replicas = 2;
  o.max_replicas = 3;
  o.scale_up_cooldown = minutes(10);
  ReplicaScaler below(o, 1);
  ScalingDecision d = below.observe(quiet(), clock.now());
  EXPECT_EQ(d.action, A::scale_up);
  EXPECT_EQ(d.reason, "1 replica below the minimum of 2; scaling up from 1 to 2 replicas");
  ReplicaScaler above(o, 5);
  d = above.observe(rejected(4), clock.now());
  EXPECT_EQ(d.action, A::scale_down);
  EXPECT_EQ(d.replicas, 4);
  EXPECT_EQ(above.observe(rejected(4), clock.now()).action, A::scale_down);
  EXPECT_EQ(above.replicas(), 3);
}

TEST(ReplicaScaler, AHoldForAnotherReasonIsNewsAndSoIsTheSameAfterABreak) {
  ManualClock clock;
  ReplicaScalerOptions o = one_to(2);
  o.scale_up_cooldown = seconds(30);
  ReplicaScaler scaler(o, 1);
  ASSERT_EQ(scaler.observe(rejected(1), clock.now()).action, A::scale_up);
  EXPECT_TRUE(scaler.observe(rejected(1), clock.now()).report);   // starting
  EXPECT_FALSE(scaler.observe(rejected(1), clock.now()).report);  // still starting
  scaler.replica_ready(clock.now());
  ScalingDecision d = scaler.observe(rejected(1), clock.now());
  EXPECT_EQ(d.held, ScalingHold::at_max);
  EXPECT_TRUE(d.report);
  EXPECT_EQ(d.reason,
            "saturated (1 call refused for want of capacity) at the maximum of 2 replicas");
  EXPECT_FALSE(scaler.observe(rejected(1), clock.now()).report);
  EXPECT_FALSE(scaler.observe(quiet(), clock.now()).report);     // a break
  EXPECT_TRUE(scaler.observe(rejected(1), clock.now()).report);  // news again
}

TEST(ReplicaScaler, ActionsAndHoldsHaveStableNames) {
  EXPECT_EQ(to_string(ScalingAction::hold), "hold");
  EXPECT_EQ(to_string(ScalingAction::scale_up), "scale_up");
  EXPECT_EQ(to_string(ScalingAction::scale_down), "scale_down");
  EXPECT_EQ(to_string(ScalingAction::start_abandoned), "start_abandoned");
  EXPECT_EQ(to_string(ScalingHold::none), "none");
  EXPECT_EQ(to_string(ScalingHold::starting), "starting");
  EXPECT_EQ(to_string(ScalingHold::at_max), "at_max");
  EXPECT_EQ(to_string(ScalingHold::cooldown), "cooldown");
}

}  // namespace
}  // namespace mend
