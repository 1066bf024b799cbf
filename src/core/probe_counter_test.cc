// ProbeCounter on a manual clock: outcomes in a row against the thresholds, and when the next
// probe is due. HealthTracker and ReplicaProbes are built on it; their own tests cover what their
// states mean, these the counting and scheduling they share.
#include "mend/core/probe_counter.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

namespace mend {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

class ProbeCounterTest : public ::testing::Test {
 protected:
  ManualClock clock_;
};

TEST_F(ProbeCounterTest, StartsWithNothingCountedAndKubernetesDefaults) {
  ProbeCounter p;
  EXPECT_EQ(p.failures(), 0);
  EXPECT_EQ(p.successes(), 0);
  EXPECT_FALSE(p.failure_threshold_reached());
  EXPECT_FALSE(p.success_threshold_reached());
  EXPECT_EQ(p.options().period, seconds(10));
  EXPECT_EQ(p.options().failure_threshold, 3);
  EXPECT_EQ(p.options().success_threshold, 1);
}

TEST_F(ProbeCounterTest, CountsInARowAndEachOutcomeResetsTheOther) {
  ProbeCounter p({.failure_threshold = 3, .success_threshold = 2}, clock_.now());
  p.record(false);
  p.record(false);
  EXPECT_EQ(p.failures(), 2);
  EXPECT_FALSE(p.failure_threshold_reached());
  p.record(true);  // the streak of failures ends
  EXPECT_EQ(p.failures(), 0);
  EXPECT_EQ(p.successes(), 1);
  EXPECT_FALSE(p.success_threshold_reached());
  p.record(true);
  EXPECT_TRUE(p.success_threshold_reached());
  p.record(false);  // and so does the streak of successes
  EXPECT_EQ(p.successes(), 0);
  EXPECT_FALSE(p.success_threshold_reached());
  p.record(false);
  EXPECT_FALSE(p.failure_threshold_reached());
  p.record(false);
  EXPECT_TRUE(p.failure_threshold_reached());
  EXPECT_EQ(p.failures(), 3);
  p.record(false);  // past the threshold it stays reached, and the count goes on
  EXPECT_TRUE(p.failure_threshold_reached());
  EXPECT_EQ(p.failures(), 4);
}

TEST_F(ProbeCounterTest, ResetCountsForgetsTheOutcomesButNotTheSchedule) {
  ProbeCounter p({.failure_threshold = 1}, clock_.now());
  p.schedule_at(clock_.now() + seconds(3));
  p.record(false);
  ASSERT_TRUE(p.failure_threshold_reached());
  p.reset_counts();
  EXPECT_EQ(p.failures(), 0);
  EXPECT_FALSE(p.failure_threshold_reached());
  EXPECT_EQ(p.next_probe_at(), clock_.now() + seconds(3));
}

TEST_F(ProbeCounterTest, TheFirstProbeIsDueAfterTheInitialDelay) {
  const TimePoint start = clock_.now();
  ProbeCounter delayed({.initial_delay = seconds(5)}, start);
  EXPECT_EQ(delayed.next_probe_at(), start + seconds(5));
  EXPECT_FALSE(delayed.due(start + milliseconds(4999)));
  EXPECT_TRUE(delayed.due(start + seconds(5)));
  ProbeCounter at_once({}, start);
  EXPECT_TRUE(at_once.due(start));
}

TEST_F(ProbeCounterTest, TakeDueSchedulesTheNextAPeriodAfterItIsSent) {
  ProbeCounter p({.period = seconds(10)}, clock_.now());
  ASSERT_TRUE(p.take_due(clock_.now()));
  EXPECT_FALSE(p.take_due(clock_.now()));  // scheduled: not due twice
  EXPECT_EQ(p.next_probe_at(), clock_.now() + seconds(10));
  // An outcome does not move the schedule: the owner that takes probes when they are sent keeps
  // its period however long the probe took to answer.
  clock_.advance(seconds(1));
  p.record(true);
  EXPECT_EQ(p.next_probe_at(), clock_.now() + seconds(9));
  clock_.advance(milliseconds(8999));
  EXPECT_FALSE(p.take_due(clock_.now()));
  clock_.advance(milliseconds(1));
  EXPECT_TRUE(p.take_due(clock_.now()));
  // Taken late, the next is a period after it was taken, not a period after it was due.
  clock_.advance(seconds(14));
  EXPECT_TRUE(p.take_due(clock_.now()));
  EXPECT_EQ(p.next_probe_at(), clock_.now() + seconds(10));
}

TEST_F(ProbeCounterTest, ScheduleNextAndScheduleAtSetTheNextProbe) {
  ProbeCounter p({.period = seconds(10)}, clock_.now());
  clock_.advance(seconds(2));
  p.schedule_next(clock_.now());  // a period after a result, as HealthTracker schedules
  EXPECT_EQ(p.next_probe_at(), clock_.now() + seconds(10));
  p.schedule_at(clock_.now() + milliseconds(100));  // sooner than the period: a quick retry
  EXPECT_FALSE(p.due(clock_.now() + milliseconds(99)));
  EXPECT_TRUE(p.due(clock_.now() + milliseconds(100)));
}

TEST_F(ProbeCounterTest, ReconfigureKeepsCountsAndScheduleAndAppliesTheNewSettingsNext) {
  ProbeCounter p({.period = seconds(10), .failure_threshold = 3}, clock_.now());
  ASSERT_TRUE(p.take_due(clock_.now()));
  p.record(false);
  p.record(false);
  p.reconfigure({.period = seconds(4), .failure_threshold = 2});
  EXPECT_EQ(p.failures(), 2);
  EXPECT_TRUE(p.failure_threshold_reached());                // the new threshold, at once
  EXPECT_EQ(p.next_probe_at(), clock_.now() + seconds(10));  // the schedule made stays
  clock_.advance(seconds(10));
  ASSERT_TRUE(p.take_due(clock_.now()));
  EXPECT_EQ(p.next_probe_at(), clock_.now() + seconds(4));  // the new period, from now on
  EXPECT_EQ(p.options().failure_threshold, 2);
}

TEST(ProbeOptionsValidation, RejectsBadValuesNamingTheField) {
  auto message_for = [](ProbeOptions o) -> std::string {
    try {
      validate_probe_options(o);
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "accepted";
  };
  EXPECT_EQ(message_for({}), "accepted");
  EXPECT_NE(message_for({.period = seconds(0)}).find("period"), std::string::npos);
  EXPECT_NE(message_for({.timeout = seconds(-1)}).find("timeout"), std::string::npos);
  EXPECT_NE(message_for({.failure_threshold = 0}).find("failure_threshold"), std::string::npos);
  EXPECT_NE(message_for({.success_threshold = 0}).find("success_threshold"), std::string::npos);
  EXPECT_NE(message_for({.initial_delay = seconds(-1)}).find("initial_delay"), std::string::npos);
}

}  // namespace
}  // namespace mend
