// File: mend/core/system_clock.h
//
// The operating system's time: the clock and the sleeper that production code runs on (with
// SeededRandom::system(), random.h, the random source). Env picks them by default, so most code
// never names them; code that takes a Clock or a Sleeper without an Env passes the shared
// instances. Policies see only the interfaces of clock.h, so tests swap in manual ones. The code
// behind this header (src/core/os/) is core's only operating-system code.
//
//   const mend::Clock& clock = mend::SystemClock::instance();
//   mend::CircuitBreaker::Permit permit = breaker.try_acquire(clock);
//   mend::SystemSleeper::instance().sleep_for(std::chrono::milliseconds(5), stop_token);
//
// SystemClock's coarse_now() loads a timestamp that a ticker thread refreshes every millisecond
// (at most about a millisecond stale, more if the machine is overloaded): a load from a cache line
// that changes once a millisecond, where now() is a call into the vDSO. The ticker starts on the
// first coarse reading and parks after a second without one, so an idle process has no thread
// waking up; the first reading after that takes the precise clock and wakes it. A child made by
// fork() starts a ticker of its own.
//
// Thread-safety: both classes are safe to use from many threads at once, and in a forked child.
#ifndef MEND_CORE_SYSTEM_CLOCK_H_
#define MEND_CORE_SYSTEM_CLOCK_H_

#include <chrono>
#include <stop_token>

#include "mend/core/clock.h"

namespace mend {

// std::chrono::steady_clock, with the ticker's coarse reading. Every SystemClock shares the one
// ticker; instance() is the one to pass around.
class SystemClock final : public Clock {
 public:
  SystemClock() noexcept;
  TimePoint now() const noexcept override { return std::chrono::steady_clock::now(); }
  static SystemClock& instance();
};

// Really waits, waking at once on a stop request.
class SystemSleeper final : public Sleeper {
 public:
  bool sleep_for(Duration d, const std::stop_token& stop) override;
  static SystemSleeper& instance();
};

}  // namespace mend

#endif  // MEND_CORE_SYSTEM_CLOCK_H_
