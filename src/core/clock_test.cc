#include "mend/core/clock.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <thread>

#include "mend/core/random.h"
#include "mend/core/system_clock.h"

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

// A coarse source refreshed by hand, behind a clock whose precise reading is fixed.
std::atomic<int> hand_source_wakes{0};
constexpr TimePoint kPreciseReading = TimePoint(std::chrono::hours(7));

TimePoint wake_hand_source() noexcept {
  hand_source_wakes.fetch_add(1);
  return kPreciseReading;
}

class HandRefreshedClock final : public Clock {
 public:
  explicit HandRefreshedClock(CoarseSource& source) : Clock(source) {}
  TimePoint now() const noexcept override { return kPreciseReading; }
};

TEST(CoarseSource, WakesItsRefresherWhenParkedAndLoadsThePublishedReadingOtherwise) {
  hand_source_wakes = 0;
  CoarseSource source(&wake_hand_source);
  const HandRefreshedClock clock(source);
  EXPECT_TRUE(source.parked());
  EXPECT_EQ(clock.coarse_now(), kPreciseReading);
  EXPECT_EQ(hand_source_wakes.load(), 1);

  const TimePoint published = kPreciseReading + milliseconds(1);
  source.publish(published);
  source.unpark();
  // A wake counts as demand, so that the refresher does not park again at its next refresh.
  EXPECT_TRUE(source.take_demand());
  EXPECT_FALSE(source.take_demand());
  EXPECT_EQ(clock.coarse_now(), published);
  EXPECT_EQ(clock.coarse_now(), published);
  EXPECT_EQ(hand_source_wakes.load(), 1);
  EXPECT_TRUE(source.take_demand());   // the readings asked for another refresh
  EXPECT_FALSE(source.take_demand());  // and no one has read since

  source.park();
  EXPECT_EQ(clock.coarse_now(), kPreciseReading);
  EXPECT_EQ(hand_source_wakes.load(), 2);
}

TEST(CoarseSource, NeverGoesBackwards) {
  CoarseSource source(&wake_hand_source);
  const HandRefreshedClock clock(source);
  source.unpark();
  source.publish(TimePoint(seconds(5)));
  source.publish(TimePoint(seconds(4)));  // a wake's reading, late in a race with the refresher
  EXPECT_EQ(clock.coarse_now(), TimePoint(seconds(5)));
  source.publish(TimePoint(seconds(6)));
  EXPECT_EQ(clock.coarse_now(), TimePoint(seconds(6)));
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

// Runs `child` in a child made by fork() and returns whether it exited with status 0.
template <class Child>
bool forked_child_passes(Child child) {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(child() ? 0 : 1);  // no gtest, no static destructors in the child
  if (pid < 0) return false;
  int status = 0;
  return ::waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

TEST(SystemClock, AForkedChildStartsATickerOfItsOwn) {
  const SystemClock& clock = SystemClock::instance();
  (void)clock.coarse_now();  // the parent's ticker runs; the child does not inherit the thread
  EXPECT_TRUE(forked_child_passes([&] {
    const TimePoint first = clock.coarse_now();
    std::this_thread::sleep_for(milliseconds(50));
    const TimePoint later = clock.coarse_now();
    const TimePoint precise = clock.now();
    // Without a ticker the child's coarse reading would stay where the fork left it.
    return later > first && later <= precise && precise - later < milliseconds(250);
  }));
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

TEST(SeededRandom, TheSystemSourceDrawsOtherValuesInAForkedChild) {
  SeededRandom& random = SeededRandom::system();
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  const pid_t pid = ::fork();
  if (pid == 0) {
    const std::uint64_t draw = random.next_u64();
    ::_exit(::write(pipe_fds[1], &draw, sizeof draw) == sizeof draw ? 0 : 1);
  }
  ASSERT_GT(pid, 0);
  const std::uint64_t parent_draw = random.next_u64();
  std::uint64_t child_draw = parent_draw;
  EXPECT_EQ(::read(pipe_fds[0], &child_draw, sizeof child_draw),
            static_cast<ssize_t>(sizeof child_draw));
  int status = 0;
  EXPECT_EQ(::waitpid(pid, &status, 0), pid);
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
  // Same state at the fork: without the reseed, the same draw.
  EXPECT_NE(child_draw, parent_draw);
}

TEST(FixedRandom, ClampsIntoTheUnitInterval) {
  EXPECT_EQ(FixedRandom(0.25).next_unit(), 0.25);
  EXPECT_EQ(FixedRandom(-1).next_unit(), 0.0);
  EXPECT_LT(FixedRandom(7).next_unit(), 1.0);
}

}  // namespace
}  // namespace mend
