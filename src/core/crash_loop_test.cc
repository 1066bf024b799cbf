#include "mend/core/crash_loop.h"

#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>
#include <vector>

namespace mend {
namespace {

using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::nanoseconds;
using std::chrono::seconds;

// Starts the process and lets it crash after `run`, returning the decision.
CrashLoopDecision crash_after(CrashLoopBackoff& backoff, ManualClock& clock, Duration run) {
  backoff.record_start(clock.now());
  clock.advance(run);
  return backoff.on_exit(clock.now());
}

TEST(CrashLoopOptions, DefaultsAreOneSecondDoublingToFiveMinutesResetAfterTen) {
  CrashLoopOptions options;
  EXPECT_EQ(options.initial, seconds(1));
  EXPECT_EQ(options.max, minutes(5));
  EXPECT_EQ(options.reset_after, minutes(10));
  EXPECT_EQ(options.intensity_max_restarts, 5);
  EXPECT_EQ(options.intensity_period, minutes(1));
}

TEST(CrashLoopBackoff, FirstCrashRestartsAtOnceThenDoublesUpToTheCap) {
  ManualClock clock;
  CrashLoopBackoff backoff;
  std::vector<Duration> delays;
  for (int i = 0; i < 12; ++i) {
    CrashLoopDecision d = crash_after(backoff, clock, milliseconds(100));
    EXPECT_EQ(d.crash_streak, i + 1);
    delays.push_back(d.delay);
    clock.advance(d.delay);
  }
  const std::vector<Duration> expected = {seconds(0),   seconds(1),   seconds(2),   seconds(4),
                                          seconds(8),   seconds(16),  seconds(32),  seconds(64),
                                          seconds(128), seconds(256), seconds(300), seconds(300)};
  EXPECT_EQ(delays, expected);
}

TEST(CrashLoopBackoff, DelayForCrashSaturatesInsteadOfOverflowing) {
  CrashLoopBackoff backoff({.initial = milliseconds(50), .max = milliseconds(200)});
  EXPECT_EQ(backoff.delay_for_crash(0), Duration::zero());
  EXPECT_EQ(backoff.delay_for_crash(1), Duration::zero());
  EXPECT_EQ(backoff.delay_for_crash(2), milliseconds(50));
  EXPECT_EQ(backoff.delay_for_crash(3), milliseconds(100));
  EXPECT_EQ(backoff.delay_for_crash(4), milliseconds(200));
  EXPECT_EQ(backoff.delay_for_crash(5), milliseconds(200));
  EXPECT_EQ(backoff.delay_for_crash(1'000'000), milliseconds(200));

  // A cap that is not a power-of-two multiple of the start is reached exactly, not overshot.
  CrashLoopBackoff odd({.initial = seconds(3), .max = seconds(10)});
  EXPECT_EQ(odd.delay_for_crash(3), seconds(6));
  EXPECT_EQ(odd.delay_for_crash(4), seconds(10));

  CrashLoopBackoff huge({.initial = nanoseconds(1), .max = Duration::max()});
  EXPECT_EQ(huge.delay_for_crash(64), nanoseconds(std::int64_t{1} << 62));
  EXPECT_EQ(huge.delay_for_crash(200), Duration::max());
}

TEST(CrashLoopBackoff, AStableRunEndsTheStreakExactlyAtResetAfter) {
  ManualClock clock;
  CrashLoopBackoff backoff({.intensity_max_restarts = 100});
  crash_after(backoff, clock, seconds(1));
  crash_after(backoff, clock, seconds(1));
  EXPECT_EQ(crash_after(backoff, clock, seconds(1)).delay, seconds(2));

  // One nanosecond short of reset_after: still the same streak.
  CrashLoopDecision short_run = crash_after(backoff, clock, minutes(10) - nanoseconds(1));
  EXPECT_EQ(short_run.crash_streak, 4);
  EXPECT_EQ(short_run.delay, seconds(4));

  // Exactly reset_after: the streak is over, this crash is the first again.
  CrashLoopDecision stable = crash_after(backoff, clock, minutes(10));
  EXPECT_EQ(stable.crash_streak, 1);
  EXPECT_EQ(stable.delay, Duration::zero());
  EXPECT_EQ(crash_after(backoff, clock, seconds(1)).delay, seconds(1));
}

TEST(CrashLoopBackoff, AnExitWithoutARecordedStartIsNotAStableRun) {
  ManualClock clock;
  CrashLoopBackoff backoff;
  EXPECT_EQ(backoff.on_exit(clock.now()).delay, Duration::zero());
  clock.advance(minutes(30));
  // No record_start: the half hour since the last exit says nothing about a run.
  EXPECT_EQ(backoff.on_exit(clock.now()).delay, seconds(1));
}

TEST(CrashLoopBackoff, ARequestedStopAfterAStableRunEndsTheStreak) {
  ManualClock clock;
  CrashLoopBackoff backoff;
  crash_after(backoff, clock, seconds(1));
  crash_after(backoff, clock, seconds(1));
  EXPECT_EQ(backoff.crash_streak(), 2);

  // Stopped on request after a short run: the streak goes on.
  backoff.record_start(clock.now());
  clock.advance(seconds(5));
  backoff.record_stop(clock.now());
  EXPECT_EQ(backoff.crash_streak(), 2);

  // Stopped on request after a long run: the next crash is the first.
  backoff.record_start(clock.now());
  clock.advance(minutes(11));
  backoff.record_stop(clock.now());
  EXPECT_EQ(backoff.crash_streak(), 0);
  EXPECT_EQ(crash_after(backoff, clock, seconds(1)).delay, Duration::zero());
}

TEST(CrashLoopBackoff, ResetForgetsStreakAndRestarts) {
  ManualClock clock;
  CrashLoopBackoff backoff({.intensity_max_restarts = 1});
  crash_after(backoff, clock, seconds(1));
  EXPECT_TRUE(crash_after(backoff, clock, seconds(1)).intensity_exceeded);
  backoff.reset();
  EXPECT_EQ(backoff.crash_streak(), 0);
  EXPECT_EQ(backoff.restarts_in_period(clock.now()), 0);
  CrashLoopDecision d = crash_after(backoff, clock, seconds(1));
  EXPECT_EQ(d.delay, Duration::zero());
  EXPECT_FALSE(d.intensity_exceeded);
}

TEST(CrashLoopBackoff, IntensityIsExceededByMoreThanMaxRestartsWithinThePeriod) {
  ManualClock clock;
  CrashLoopBackoff backoff({.initial = milliseconds(10), .max = milliseconds(10)});
  for (int i = 1; i <= 5; ++i) {
    CrashLoopDecision d = crash_after(backoff, clock, seconds(1));
    EXPECT_EQ(d.restarts_in_period, i);
    EXPECT_FALSE(d.intensity_exceeded) << "restart " << i;
    EXPECT_FALSE(d.intensity_newly_exceeded);
  }
  CrashLoopDecision sixth = crash_after(backoff, clock, seconds(1));
  EXPECT_EQ(sixth.restarts_in_period, 6);
  EXPECT_TRUE(sixth.intensity_exceeded);
  EXPECT_TRUE(sixth.intensity_newly_exceeded);
  // Restarts go on with backoff: the decision still has a delay.
  EXPECT_EQ(sixth.delay, milliseconds(10));

  // Still exceeded, but only the crossing asks for escalation.
  CrashLoopDecision seventh = crash_after(backoff, clock, seconds(1));
  EXPECT_TRUE(seventh.intensity_exceeded);
  EXPECT_FALSE(seventh.intensity_newly_exceeded);
}

TEST(CrashLoopBackoff, TheIntensityWindowIsHalfOpenAndReArms) {
  ManualClock clock;
  CrashLoopBackoff backoff({.intensity_max_restarts = 1, .intensity_period = seconds(10)});
  const TimePoint t0 = clock.now();
  EXPECT_FALSE(backoff.on_exit(t0).intensity_exceeded);
  clock.advance(seconds(10));
  // The restart at t0 is exactly one period old: outside (now - period, now].
  CrashLoopDecision at_period = backoff.on_exit(clock.now());
  EXPECT_EQ(at_period.restarts_in_period, 1);
  EXPECT_FALSE(at_period.intensity_exceeded);

  clock.advance(seconds(10) - nanoseconds(1));
  CrashLoopDecision inside = backoff.on_exit(clock.now());
  EXPECT_EQ(inside.restarts_in_period, 2);
  EXPECT_TRUE(inside.intensity_newly_exceeded);
  EXPECT_EQ(backoff.restarts_in_period(clock.now()), 2);
  EXPECT_EQ(backoff.restarts_in_period(clock.now() + seconds(10)), 0);

  // Calm again: an exit within bounds re-arms, the next crossing escalates again.
  clock.advance(minutes(1));
  EXPECT_FALSE(backoff.on_exit(clock.now()).intensity_exceeded);
  CrashLoopDecision again = backoff.on_exit(clock.now());
  EXPECT_TRUE(again.intensity_exceeded);
  EXPECT_TRUE(again.intensity_newly_exceeded);
}

TEST(CrashLoopBackoff, ZeroMaxRestartsExceedsOnTheFirstRestart) {
  ManualClock clock;
  CrashLoopBackoff backoff({.intensity_max_restarts = 0});
  CrashLoopDecision d = backoff.on_exit(clock.now());
  EXPECT_TRUE(d.intensity_newly_exceeded);
  EXPECT_EQ(d.delay, Duration::zero());
}

TEST(CrashLoopBackoff, RejectsInvalidOptions) {
  EXPECT_THROW(CrashLoopBackoff({.initial = seconds(-1)}), std::invalid_argument);
  EXPECT_THROW(CrashLoopBackoff({.initial = seconds(10), .max = seconds(5)}),
               std::invalid_argument);
  EXPECT_THROW(CrashLoopBackoff({.reset_after = seconds(-1)}), std::invalid_argument);
  EXPECT_THROW(CrashLoopBackoff({.intensity_max_restarts = -1}), std::invalid_argument);
  EXPECT_THROW(CrashLoopBackoff({.intensity_period = seconds(-1)}), std::invalid_argument);
  try {
    CrashLoopBackoff({.initial = seconds(10), .max = seconds(5)});
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "CrashLoopOptions.max must be at least initial");
  }
}

}  // namespace
}  // namespace mend
