// File: mend/core/clock.h
//
// Time as mend's policies see it. No policy reads the system clock or sleeps by itself: every
// one is handed a `Clock` (and, where it waits, a `Sleeper`). Production code passes
// `SystemClock::instance()`; tests pass a `ManualClock` and advance it by hand, so that timing
// logic is exact and no test ever sleeps.
//
//   mend::ManualClock clock;                 // starts at an arbitrary fixed instant
//   mend::ManualSleeper sleeper(clock);      // "sleeping" advances the manual clock
//   breaker.try_acquire(clock);
//   clock.advance(std::chrono::seconds(60)); // the recovery timeout has now passed
//
// Thread-safety: every class here is safe to use from many threads at once.
#ifndef MEND_CORE_CLOCK_H_
#define MEND_CORE_CLOCK_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <stop_token>
#include <string>
#include <vector>

namespace mend {

using Duration = std::chrono::nanoseconds;
using TimePoint = std::chrono::steady_clock::time_point;
// Calendar time, for what outlives the process (tickets, incidents, the outbox): a steady
// TimePoint means nothing after a restart.
using WallTime = std::chrono::system_clock::time_point;

// Seconds as a double, for messages and arithmetic on backoff factors.
inline double to_seconds(Duration d) {
  return std::chrono::duration<double>(d).count();
}
// The inverse, saturating instead of overflowing for absurd inputs.
Duration from_seconds(double seconds);
// "2026-01-01T00:15:00.000Z": UTC, millisecond precision, for records and notifications.
std::string to_iso8601(std::chrono::system_clock::time_point t);

namespace detail {
// The shared state of the system clock's coarse ticker (see SystemClock). Readers load it inline.
struct CoarseTicker {
  alignas(64) std::atomic<std::int64_t> nanos{0};
  alignas(64) std::atomic<bool> demanded{false};
  alignas(64) std::atomic<bool> parked{true};
};
extern CoarseTicker g_coarse_ticker;
TimePoint wake_coarse_ticker() noexcept;  // starts or unparks the ticker; returns a precise reading

inline TimePoint read_coarse_ticker() noexcept {
  if (g_coarse_ticker.parked.load(std::memory_order_acquire)) [[unlikely]] {
    return wake_coarse_ticker();
  }
  // At most one shared write per tick, not one per reading.
  if (!g_coarse_ticker.demanded.load(std::memory_order_relaxed)) {
    g_coarse_ticker.demanded.store(true, std::memory_order_relaxed);
  }
  return TimePoint(Duration(g_coarse_ticker.nanos.load(std::memory_order_acquire)));
}
}  // namespace detail

class Clock {
 public:
  virtual ~Clock() = default;
  // A monotonic reading.
  virtual TimePoint now() const noexcept = 0;
  // A reading that may be a few milliseconds stale but is cheaper to take. Sliding windows and
  // slow-call detection use it on every call, where a precise reading would cost more than the
  // policy itself. Same epoch as now(). Not virtual on purpose: the system clock's coarse
  // reading is an inline load, with no call at all; other clocks override coarse_reading().
  TimePoint coarse_now() const noexcept {
    if (uses_coarse_ticker_) [[likely]]
      return detail::read_coarse_ticker();
    return coarse_reading();
  }
  // Calendar time. The system clock's is std::chrono::system_clock; a manual clock's moves with
  // its monotonic reading, so SLA deadlines stored as wall time are testable by hand too.
  virtual WallTime wall_now() const noexcept { return std::chrono::system_clock::now(); }

 protected:
  Clock() = default;
  explicit Clock(bool uses_coarse_ticker) : uses_coarse_ticker_(uses_coarse_ticker) {}
  virtual TimePoint coarse_reading() const noexcept { return now(); }

 private:
  const bool uses_coarse_ticker_ = false;
};

// std::chrono::steady_clock. coarse_now() loads a value that a ticker thread refreshes every
// millisecond (at most about a millisecond stale, more if the machine is overloaded); the ticker
// starts on the first coarse reading and parks after a second without one, so an idle process
// has no thread waking up.
class SystemClock final : public Clock {
 public:
  SystemClock() : Clock(/*uses_coarse_ticker=*/true) {}
  TimePoint now() const noexcept override { return std::chrono::steady_clock::now(); }
  static SystemClock& instance();
};

// A clock that moves only when told to. Starts at a fixed instant well after the epoch so that
// "now - duration" never underflows in tests. Its wall time starts at `wall_start` (by default
// 2026-01-01T00:00:00Z) and moves with it.
class ManualClock final : public Clock {
 public:
  static constexpr WallTime kDefaultWallStart = WallTime(std::chrono::seconds(1767225600));

  explicit ManualClock(TimePoint start = TimePoint(std::chrono::hours(1000)),
                       WallTime wall_start = kDefaultWallStart)
      : nanos_(start.time_since_epoch().count()), start_(start), wall_start_(wall_start) {}
  TimePoint now() const noexcept override {
    return TimePoint(Duration(nanos_.load(std::memory_order_acquire)));
  }
  WallTime wall_now() const noexcept override {
    return wall_start_ + std::chrono::duration_cast<WallTime::duration>(now() - start_);
  }
  void advance(Duration d) noexcept { nanos_.fetch_add(d.count(), std::memory_order_acq_rel); }
  void set(TimePoint t) noexcept {
    nanos_.store(t.time_since_epoch().count(), std::memory_order_release);
  }

 private:
  std::atomic<std::int64_t> nanos_;
  const TimePoint start_;
  const WallTime wall_start_;
};

// Waits. The synchronous executor waits out backoff delays through one of these.
class Sleeper {
 public:
  virtual ~Sleeper() = default;
  // Waits for `d`. Returns false, early, when `stop` is requested (cancellation).
  virtual bool sleep_for(Duration d, const std::stop_token& stop) = 0;
};

// Really waits, waking at once on a stop request.
class SystemSleeper final : public Sleeper {
 public:
  bool sleep_for(Duration d, const std::stop_token& stop) override;
  static SystemSleeper& instance();
};

// Advances a ManualClock instead of waiting, and remembers every delay it was asked for, so a
// test can assert the exact delay sequence of a retry loop that "slept" for minutes in no time.
class ManualSleeper final : public Sleeper {
 public:
  explicit ManualSleeper(ManualClock& clock) : clock_(clock) {}
  bool sleep_for(Duration d, const std::stop_token& stop) override;
  std::vector<Duration> sleeps() const;
  void clear();

 private:
  ManualClock& clock_;
  mutable std::mutex mu_;
  std::vector<Duration> sleeps_;
};

}  // namespace mend

#endif  // MEND_CORE_CLOCK_H_
