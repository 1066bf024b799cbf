// ReplicaProbes on a manual clock: when each probe is due, the startup probe's quick retries and
// its threshold counted once per period, readiness in and out of traffic, liveness restarts, and a
// replica mend does not start. `mend serve` makes the probes; these are its rules.
#include "mend/core/replica_probes.h"

#include <gtest/gtest.h>

#include <vector>

namespace mend {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Change = ProbeVerdict::Change;

ProbeSet probes() {
  ProbeSet p;
  p.startup = {.period = seconds(10), .failure_threshold = 3};
  p.readiness = {.period = seconds(5), .failure_threshold = 2, .success_threshold = 2};
  p.liveness = {.period = seconds(7), .failure_threshold = 3};
  return p;
}

class ReplicaProbesTest : public ::testing::Test {
 protected:
  ManualClock clock_;
};

TEST_F(ReplicaProbesTest, ANotYetListeningReplicaIsProbedAgainSoonAndReadyAtItsFirstAnswer) {
  ReplicaProbes r(probes(), /*supervised=*/true);
  r.started(clock_.now());
  EXPECT_FALSE(r.is_ready());
  ASSERT_EQ(r.take_due(clock_.now()), ProbeKind::startup);
  EXPECT_EQ(r.take_due(clock_.now()), std::nullopt);  // scheduled: not due twice
  EXPECT_EQ(r.record(ProbeKind::startup, false, clock_.now()).change, Change::none);
  // Quick retries: 100 ms, then 200 ms, then 400 ms after each failure, not the 10 s period.
  std::vector<long> waits;
  for (int i = 0; i < 3; ++i) {
    const TimePoint from = clock_.now();
    while (!r.take_due(clock_.now())) clock_.advance(milliseconds(10));
    waits.push_back(std::chrono::duration_cast<milliseconds>(clock_.now() - from).count());
    if (i < 2) r.record(ProbeKind::startup, false, clock_.now());
  }
  EXPECT_EQ(waits, (std::vector<long>{100, 200, 400}));
  ProbeVerdict v = r.record(ProbeKind::startup, true, clock_.now());
  EXPECT_EQ(v.change, Change::ready);
  EXPECT_TRUE(r.is_started());
  EXPECT_TRUE(r.is_ready());
}

TEST_F(ReplicaProbesTest, StartupFailuresCountOncePerPeriodAndRestartAtTheThreshold) {
  ReplicaProbes r(probes(), true);
  r.started(clock_.now());
  int restarts_at_second = -1;
  for (int second = 0; second <= 40 && restarts_at_second < 0; ++second) {
    while (r.take_due(clock_.now())) {
      if (r.record(ProbeKind::startup, false, clock_.now()).change == Change::restart) {
        restarts_at_second = second;
      }
    }
    clock_.advance(seconds(1));
  }
  // Failures count once per period, however many quick retries run meanwhile: the third (the
  // threshold) comes with the first probe at least 10 s after the second, which came at least
  // 10 s after the first. Here probes run at 0, 1, 2, 3, 4, 6, 10, 17 and 27 s: restarted at 27 s,
  // between (threshold - 1) x period and threshold x period.
  EXPECT_GE(restarts_at_second, 20);
  EXPECT_LE(restarts_at_second, 30);
}

TEST_F(ReplicaProbesTest, ReadinessTakesItOutAndPutsItBackByItsThresholds) {
  ReplicaProbes r(probes(), true);
  r.started(clock_.now());
  r.take_due(clock_.now());
  r.record(ProbeKind::startup, true, clock_.now());
  clock_.advance(seconds(5));
  ASSERT_EQ(r.take_due(clock_.now()), ProbeKind::readiness);
  EXPECT_EQ(r.record(ProbeKind::readiness, false, clock_.now()).change, Change::none);
  ProbeVerdict out = r.record(ProbeKind::readiness, false, clock_.now());
  EXPECT_EQ(out.change, Change::not_ready);
  EXPECT_EQ(out.failures, 2);
  EXPECT_FALSE(r.is_ready());
  EXPECT_EQ(r.record(ProbeKind::readiness, true, clock_.now()).change, Change::none);
  EXPECT_EQ(r.record(ProbeKind::readiness, true, clock_.now()).change, Change::ready);
  EXPECT_TRUE(r.is_ready());
}

TEST_F(ReplicaProbesTest, LivenessRestartsASupervisedReplicaAfterItsThreshold) {
  ReplicaProbes r(probes(), true);
  r.started(clock_.now());
  r.take_due(clock_.now());
  r.record(ProbeKind::startup, true, clock_.now());
  // Readiness every 5 s comes first when both are due; liveness every 7 s.
  std::vector<ProbeKind> kinds;
  for (int second = 1; second <= 14; ++second) {
    clock_.advance(seconds(1));
    while (auto kind = r.take_due(clock_.now())) kinds.push_back(*kind);
  }
  EXPECT_EQ(kinds, (std::vector<ProbeKind>{ProbeKind::readiness, ProbeKind::liveness,
                                           ProbeKind::readiness, ProbeKind::liveness}));
  EXPECT_EQ(r.record(ProbeKind::liveness, false, clock_.now()).change, Change::none);
  EXPECT_EQ(r.record(ProbeKind::liveness, true, clock_.now()).change, Change::none);  // resets
  r.record(ProbeKind::liveness, false, clock_.now());
  r.record(ProbeKind::liveness, false, clock_.now());
  ProbeVerdict v = r.record(ProbeKind::liveness, false, clock_.now());
  EXPECT_EQ(v.change, Change::restart);
  EXPECT_EQ(v.failures, 3);
  EXPECT_FALSE(r.is_ready());
}

TEST_F(ReplicaProbesTest,
       AReplicaMendDoesNotStartIsReadyUntilAProbeSaysOtherwiseAndNeverRestarted) {
  ProbeSet p = probes();
  p.startup.failure_threshold = 1;
  ReplicaProbes r(p, /*supervised=*/false);
  EXPECT_TRUE(r.is_started());
  EXPECT_TRUE(r.is_ready());
  ASSERT_EQ(r.take_due(clock_.now()), ProbeKind::readiness);
  r.record(ProbeKind::readiness, false, clock_.now());
  EXPECT_EQ(r.record(ProbeKind::readiness, false, clock_.now()).change, Change::not_ready);
  for (int second = 0; second < 60; ++second) {
    clock_.advance(seconds(1));
    while (auto kind = r.take_due(clock_.now())) {
      EXPECT_NE(*kind, ProbeKind::liveness) << "no liveness probe for what mend cannot restart";
      EXPECT_NE(r.record(*kind, false, clock_.now()).change, Change::restart);
    }
  }
}

TEST_F(ReplicaProbesTest, ARestartStartsOverAndAnExitIsNeitherStartedNorReady) {
  ReplicaProbes r(probes(), true);
  r.started(clock_.now());
  r.take_due(clock_.now());
  r.record(ProbeKind::startup, true, clock_.now());
  r.exited();
  EXPECT_FALSE(r.is_started());
  EXPECT_FALSE(r.is_ready());
  ProbeSet delayed = probes();
  delayed.startup.initial_delay = seconds(2);
  ReplicaProbes d(delayed, true);
  d.started(clock_.now());
  EXPECT_EQ(d.take_due(clock_.now() + milliseconds(1999)), std::nullopt);
  EXPECT_EQ(d.take_due(clock_.now() + seconds(2)), ProbeKind::startup);
  EXPECT_EQ(d.timeout(ProbeKind::startup), delayed.startup.timeout);
}

}  // namespace
}  // namespace mend
