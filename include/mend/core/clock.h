// File: mend/core/clock.h
//
// Time as mend's policies see it. No policy reads the system clock or sleeps by itself: every
// one is handed a `Clock` (and, where it waits, a `Sleeper`). Production code passes the system
// ones (mend/core/system_clock.h; `Env` picks them by default); tests pass a `ManualClock` and
// advance it by hand, so that timing logic is exact and no test ever sleeps. This header is pure:
// interfaces and the manual implementations, no operating system.
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

// A timestamp that something keeps fresh in the background, so that a clock's coarse reading is
// a load rather than a call (the system clock's ticker thread refreshes one: system_clock.h).
// The refresher parks when no one reads; the first reading after that calls `wake`, which
// restarts it and returns a precise reading. A clock hands its source to Clock's constructor.
//
// Thread-safety: every member is safe from any thread. read() is the readers'; the others are
// the refresher's (and its wake's), which may race with readers and with one another.
class CoarseSource {
 public:
  // Starts or unparks the refresher, and returns a precise reading in the published epoch.
  using WakeFunction = TimePoint (*)() noexcept;

  // constexpr, so that a source can be constant-initialized and read during static init.
  explicit constexpr CoarseSource(WakeFunction wake) noexcept : wake_(wake) {}
  CoarseSource(const CoarseSource&) = delete;
  CoarseSource& operator=(const CoarseSource&) = delete;

  TimePoint read() noexcept {
    if (parked_.load(std::memory_order_acquire)) [[unlikely]] {
      return wake_();
    }
    // At most one shared write per refresh, not one per reading.
    if (!demanded_.load(std::memory_order_relaxed)) {
      demanded_.store(true, std::memory_order_relaxed);
    }
    return TimePoint(Duration(nanos_.load(std::memory_order_acquire)));
  }

  // Stores `reading` unless a later one is there already: a wake and the refresher race, and a
  // coarse reading must never go backwards.
  void publish(TimePoint reading) noexcept;
  // Readers load the published reading from now on (and count as demand for the next refresh).
  void unpark() noexcept {
    demanded_.store(true, std::memory_order_relaxed);
    parked_.store(false, std::memory_order_release);
  }
  // Readers wake the refresher from now on.
  void park() noexcept { parked_.store(true, std::memory_order_release); }
  bool parked() const noexcept { return parked_.load(std::memory_order_acquire); }
  // Whether anyone read since the last call: the refresher parks after enough idle refreshes.
  bool take_demand() noexcept { return demanded_.exchange(false, std::memory_order_relaxed); }

 private:
  // Each on a cache line of its own: nanos_ changes every refresh, demanded_ once per refresh
  // (by a reader), parked_ and wake_ almost never, so a reader's loads of parked_ stay cached.
  alignas(64) std::atomic<std::int64_t> nanos_{0};
  alignas(64) std::atomic<bool> demanded_{false};
  alignas(64) std::atomic<bool> parked_{true};
  const WakeFunction wake_;
};

class Clock {
 public:
  virtual ~Clock() = default;
  // A monotonic reading.
  virtual TimePoint now() const noexcept = 0;
  // A reading that may be a few milliseconds stale but is cheaper to take. Sliding windows and
  // slow-call detection use it on every call, where a precise reading would cost more than the
  // policy itself. Same epoch as now(). Not virtual on purpose: a clock with a CoarseSource
  // (the system clock) reads it inline, with no call at all; other clocks override
  // coarse_reading().
  TimePoint coarse_now() const noexcept {
    if (coarse_source_ != nullptr) [[likely]]
      return coarse_source_->read();
    return coarse_reading();
  }
  // Calendar time. The system clock's is std::chrono::system_clock; a manual clock's moves with
  // its monotonic reading, so SLA deadlines stored as wall time are testable by hand too.
  virtual WallTime wall_now() const noexcept { return std::chrono::system_clock::now(); }

 protected:
  Clock() = default;
  // For a clock whose coarse readings are `source`'s, which must outlive it.
  explicit Clock(CoarseSource& source) noexcept : coarse_source_(&source) {}
  virtual TimePoint coarse_reading() const noexcept { return now(); }

 private:
  CoarseSource* const coarse_source_ = nullptr;  // a reading writes its demand there
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
