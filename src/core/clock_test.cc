#include "mend/core/clock.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "mend/core/random.h"

namespace mend {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(ManualClock, MovesOnlyWhenTold) {
  ManualClock clock;
  const TimePoint start = clock.now();
  EXPECT_EQ(clock.now(), start);
  clock.advance(seconds(5));
  EXPECT_EQ(clock.now() - start, seconds(5));
  EXPECT_EQ(clock.coarse_now(), clock.now());
  clock.set(start);
  EXPECT_EQ(clock.now(), start);
}

TEST(ManualSleeper, AdvancesTheClockAndRemembersEachDelay) {
  ManualClock clock;
  ManualSleeper sleeper(clock);
  const TimePoint start = clock.now();
  EXPECT_TRUE(sleeper.sleep_for(seconds(2), {}));
  EXPECT_TRUE(sleeper.sleep_for(milliseconds(1500), {}));
  EXPECT_EQ(clock.now() - start, milliseconds(3500));
  EXPECT_EQ(sleeper.sleeps(), (std::vector<Duration>{seconds(2), milliseconds(1500)}));
  std::stop_source stop;
  stop.request_stop();
  EXPECT_FALSE(sleeper.sleep_for(seconds(1), stop.get_token()));
  EXPECT_EQ(clock.now() - start, milliseconds(3500));
}

TEST(SystemSleeper, ReturnsAtOnceWhenStoppedOrForNoTime) {
  std::stop_source stop;
  stop.request_stop();
  // An hour's sleep that must not happen: the stop request is already there.
  EXPECT_FALSE(SystemSleeper::instance().sleep_for(std::chrono::hours(1), stop.get_token()));
  EXPECT_TRUE(SystemSleeper::instance().sleep_for(Duration::zero(), {}));
}

TEST(SystemClock, CoarseReadingsShareTheEpoch) {
  const SystemClock& clock = SystemClock::instance();
  const auto precise = clock.now();
  const auto coarse = clock.coarse_now();
  EXPECT_LT(std::chrono::abs(precise - coarse), milliseconds(100));
}

TEST(FromSeconds, SaturatesAndRejectsNonsense) {
  EXPECT_EQ(from_seconds(1.5), milliseconds(1500));
  EXPECT_EQ(from_seconds(-3), Duration::zero());
  EXPECT_EQ(from_seconds(std::nan("")), Duration::zero());
  EXPECT_GT(from_seconds(std::numeric_limits<double>::infinity()), std::chrono::hours(24 * 365));
}

TEST(SeededRandom, IsReproducibleAndUniformEnough) {
  SeededRandom a(99), b(99), c(100);
  double sum = 0;
  bool differs = false;
  for (int i = 0; i < 100000; ++i) {
    const double x = a.next_unit();
    ASSERT_EQ(x, b.next_unit());
    ASSERT_GE(x, 0.0);
    ASSERT_LT(x, 1.0);
    differs |= x != c.next_unit();
    sum += x;
  }
  EXPECT_TRUE(differs);
  EXPECT_NEAR(sum / 100000, 0.5, 0.01);
}

TEST(FixedRandom, ClampsIntoTheUnitInterval) {
  EXPECT_EQ(FixedRandom(0.25).next_unit(), 0.25);
  EXPECT_EQ(FixedRandom(-1).next_unit(), 0.0);
  EXPECT_LT(FixedRandom(7).next_unit(), 1.0);
}

}  // namespace
}  // namespace mend
