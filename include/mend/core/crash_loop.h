// File: mend/core/crash_loop.h
//
// How soon a supervised process that keeps crashing is started again, and when its crashes are
// too many for restarts alone to be the answer.
//
// Backoff, as Kubernetes' CrashLoopBackOff but with a 1 s start (k8s' 10 s is too slow for an
// agent that crashed once because of a bad request): the first crash is restarted at once, the
// next after `initial`, then 2x, 4x ... capped at `max`. A run of `reset_after` or longer
// forgets the streak: the next crash is again "the first".
//
// Restart intensity, as OTP's and systemd's: more than `intensity_max_restarts` restarts within
// `intensity_period` means something is wrong that restarting will not fix, and whoever drives
// the supervisor escalates. Restarts go on with backoff all the same (k8s never gives up on a
// container: an agent whose database comes back is running again without an operator).
//
//   mend::CrashLoopBackoff backoff;              // 1 s doubling to 5 min, reset after 10 min
//   backoff.record_start(clock.now());
//   ...                                          // the process exits on its own
//   mend::CrashLoopDecision d = backoff.on_exit(clock.now());
//   if (d.intensity_newly_exceeded) escalate(d.restarts_in_period);
//   schedule_start(clock.now() + d.delay);       // 0 for the first crash
//
// The class is pure: it never reads a clock, every method is handed `now`. Tests drive it on a
// ManualClock and are exact.
//
// Thread-safety: none; one object per supervised process, used by whoever supervises it under
// that supervisor's own lock. The options are a value.
#ifndef MEND_CORE_CRASH_LOOP_H_
#define MEND_CORE_CRASH_LOOP_H_

#include <chrono>
#include <deque>
#include <optional>

#include "mend/core/clock.h"

namespace mend {

struct CrashLoopOptions {
  // The delay before the second restart of a crash streak (the first is immediate). 1 s.
  Duration initial = std::chrono::seconds(1);
  // The longest delay between restarts. 5 min (k8s' cap).
  Duration max = std::chrono::minutes(5);
  // A run at least this long ends a crash streak. 10 min (k8s').
  Duration reset_after = std::chrono::minutes(10);
  // More restarts than this within intensity_period exceed the restart intensity. 5 in 1 min
  // (between systemd's 5 in 10 s and OTP's 1 in 5 s, for agents that restart with backoff).
  int intensity_max_restarts = 5;
  Duration intensity_period = std::chrono::minutes(1);
};

// What to do after an exit that nobody asked for.
struct CrashLoopDecision {
  // Wait this long before the next start: zero for the first crash of a streak.
  Duration delay{};
  // Crashes in the current streak, this one included: 1 for the first.
  int crash_streak = 0;
  // Restarts within the last intensity_period, this one included.
  int restarts_in_period = 0;
  // restarts_in_period > intensity_max_restarts.
  bool intensity_exceeded = false;
  // intensity_exceeded, and it was not at the previous exit: the one exit to escalate on. It is
  // re-armed by an exit that finds the intensity within bounds again.
  bool intensity_newly_exceeded = false;
};

class CrashLoopBackoff {
 public:
  // Throws std::invalid_argument, naming the field, for negative durations or counts, or a max
  // below initial.
  explicit CrashLoopBackoff(CrashLoopOptions options = {});

  // The process was started at `now`.
  void record_start(TimePoint now);
  // The process exited at `now` without being asked to: a crash. Counts one restart.
  CrashLoopDecision on_exit(TimePoint now);
  // The process exited at `now` because it was asked to (a stop or a requested restart): no
  // crash, no restart counted, but a run of reset_after or longer still ends the crash streak.
  void record_stop(TimePoint now);
  // Forgets the streak and the restart history (an operator started the process afresh).
  void reset();

  // The delay the n-th crash of a streak is given (n >= 1): 0, initial, 2 initial, ... max.
  Duration delay_for_crash(int n) const;
  int crash_streak() const noexcept { return streak_; }
  // Restarts recorded within (now - intensity_period, now].
  int restarts_in_period(TimePoint now) const;
  const CrashLoopOptions& options() const noexcept { return options_; }

 private:
  void end_streak_if_stable(TimePoint now);
  void forget_restarts_before(TimePoint now);

  CrashLoopOptions options_;
  std::optional<TimePoint> started_at_;
  int streak_ = 0;
  std::deque<TimePoint> restarts_;  // oldest first
  bool exceeded_ = false;
};

}  // namespace mend

#endif  // MEND_CORE_CRASH_LOOP_H_
