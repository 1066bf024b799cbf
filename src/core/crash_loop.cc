#include "mend/core/crash_loop.h"

#include <stdexcept>
#include <string>

namespace mend {
namespace {

void require(bool condition, const char* field, const char* rule) {
  if (!condition) {
    throw std::invalid_argument(std::string("CrashLoopOptions.") + field + " " + rule);
  }
}

}  // namespace

CrashLoopBackoff::CrashLoopBackoff(CrashLoopOptions options) : options_(options) {
  require(options_.initial >= Duration::zero(), "initial", "must not be negative");
  require(options_.max >= options_.initial, "max", "must be at least initial");
  require(options_.reset_after >= Duration::zero(), "reset_after", "must not be negative");
  require(options_.intensity_max_restarts >= 0, "intensity_max_restarts", "must not be negative");
  require(options_.intensity_period >= Duration::zero(), "intensity_period",
          "must not be negative");
}

void CrashLoopBackoff::record_start(TimePoint now) {
  started_at_ = now;
}

CrashLoopDecision CrashLoopBackoff::on_exit(TimePoint now) {
  end_streak_if_stable(now);
  started_at_.reset();
  ++streak_;

  forget_restarts_before(now);
  restarts_.push_back(now);

  CrashLoopDecision decision;
  decision.delay = delay_for_crash(streak_);
  decision.crash_streak = streak_;
  decision.restarts_in_period = static_cast<int>(restarts_.size());
  decision.intensity_exceeded = decision.restarts_in_period > options_.intensity_max_restarts;
  decision.intensity_newly_exceeded = decision.intensity_exceeded && !exceeded_;
  exceeded_ = decision.intensity_exceeded;
  return decision;
}

void CrashLoopBackoff::record_stop(TimePoint now) {
  end_streak_if_stable(now);
  started_at_.reset();
}

void CrashLoopBackoff::reset() {
  started_at_.reset();
  streak_ = 0;
  restarts_.clear();
  exceeded_ = false;
}

Duration CrashLoopBackoff::delay_for_crash(int n) const {
  if (n <= 1) return Duration::zero();
  Duration delay = options_.initial;
  // Doubles n - 2 times, stopping at the cap before the multiplication could overflow.
  for (int i = 2; i < n && delay < options_.max; ++i) {
    delay = delay > options_.max / 2 ? options_.max : delay * 2;
  }
  return delay < options_.max ? delay : options_.max;
}

int CrashLoopBackoff::restarts_in_period(TimePoint now) const {
  int count = 0;
  for (TimePoint t : restarts_) {
    if (t > now - options_.intensity_period && t <= now) ++count;
  }
  return count;
}

void CrashLoopBackoff::end_streak_if_stable(TimePoint now) {
  if (started_at_ && now - *started_at_ >= options_.reset_after) streak_ = 0;
}

void CrashLoopBackoff::forget_restarts_before(TimePoint now) {
  const TimePoint window_start = now - options_.intensity_period;
  while (!restarts_.empty() && restarts_.front() <= window_start) restarts_.pop_front();
}

}  // namespace mend
