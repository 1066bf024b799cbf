#include "mend/clock.h"

#include <time.h>

#include <cmath>
#include <condition_variable>
#include <limits>

namespace mend {

Duration from_seconds(double seconds) {
  if (!(seconds > 0)) return Duration::zero();  // also maps NaN to zero
  constexpr double kMaxSeconds = 1e9;          // ~31 years: beyond any sane delay
  if (seconds >= kMaxSeconds) seconds = kMaxSeconds;
  return Duration(static_cast<Duration::rep>(std::llround(seconds * 1e9)));
}

TimePoint SystemClock::coarse_now() const noexcept {
  timespec ts{};
  // Same epoch as steady_clock (CLOCK_MONOTONIC) on Linux, a fraction of the cost.
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return TimePoint(std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec));
}

SystemClock& SystemClock::instance() {
  static SystemClock clock;
  return clock;
}

bool SystemSleeper::sleep_for(Duration d, const std::stop_token& stop) {
  if (stop.stop_requested()) return false;
  if (d <= Duration::zero()) return true;
  std::mutex mu;
  std::condition_variable_any cv;
  std::unique_lock lock(mu);
  // wait_for with a stop token returns early (with the predicate's value) on a stop request.
  return !cv.wait_for(lock, stop, d, [] { return false; }) && !stop.stop_requested();
}

SystemSleeper& SystemSleeper::instance() {
  static SystemSleeper sleeper;
  return sleeper;
}

bool ManualSleeper::sleep_for(Duration d, const std::stop_token& stop) {
  if (stop.stop_requested()) return false;
  {
    std::lock_guard lock(mu_);
    sleeps_.push_back(d);
  }
  clock_.advance(d);
  return true;
}

std::vector<Duration> ManualSleeper::sleeps() const {
  std::lock_guard lock(mu_);
  return sleeps_;
}

void ManualSleeper::clear() {
  std::lock_guard lock(mu_);
  sleeps_.clear();
}

}  // namespace mend
