#include "mend/core/clock.h"

#include <cmath>
#include <cstdio>

namespace mend {

Duration from_seconds(double seconds) {
  if (!(seconds > 0)) return Duration::zero();  // also maps NaN to zero
  constexpr double kMaxSeconds = 1e9;           // ~31 years: beyond any sane delay
  if (seconds >= kMaxSeconds) seconds = kMaxSeconds;
  return Duration(static_cast<Duration::rep>(std::llround(seconds * 1e9)));
}

void CoarseSource::publish(TimePoint reading) noexcept {
  const std::int64_t nanos = reading.time_since_epoch().count();
  std::int64_t seen = nanos_.load(std::memory_order_relaxed);
  while (seen < nanos && !nanos_.compare_exchange_weak(seen, nanos, std::memory_order_release,
                                                       std::memory_order_relaxed)) {
  }
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

std::string to_iso8601(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  const auto ms = floor<milliseconds>(t);
  const auto day = floor<days>(ms);
  const year_month_day ymd{day};
  const hh_mm_ss<milliseconds> hms{ms - day};
  char buf[40];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02d.%03dZ",
                static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month()),
                static_cast<unsigned>(ymd.day()), static_cast<int>(hms.hours().count()),
                static_cast<int>(hms.minutes().count()), static_cast<int>(hms.seconds().count()),
                static_cast<int>(hms.subseconds().count()));
  return buf;
}

}  // namespace mend
