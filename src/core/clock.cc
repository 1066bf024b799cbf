#include "mend/core/clock.h"

#include <pthread.h>
#include <time.h>

#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <limits>
#include <new>
#include <thread>

namespace mend {

Duration from_seconds(double seconds) {
  if (!(seconds > 0)) return Duration::zero();  // also maps NaN to zero
  constexpr double kMaxSeconds = 1e9;           // ~31 years: beyond any sane delay
  if (seconds >= kMaxSeconds) seconds = kMaxSeconds;
  return Duration(static_cast<Duration::rep>(std::llround(seconds * 1e9)));
}

namespace {

std::int64_t monotonic_nanos() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);  // steady_clock's own source on Linux
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// The coarse clock: a ticker thread stores CLOCK_MONOTONIC into one shared atomic every
// millisecond, and readers load it. A reading costs a load from a cache line that changes once
// a millisecond, where clock_gettime costs a call into the vDSO; failure-rate breakers read it
// twice per call. The ticker starts on the first reading and parks after a second without
// readers, so an idle process has no thread waking up; the first reading after that takes the
// precise clock and wakes it. After fork() the child starts its own.
// Stores a reading unless a later one is there already: wake() and the ticker race, and the
// coarse clock must never go backwards.
void publish_coarse(std::int64_t nanos) noexcept {
  std::int64_t seen = detail::g_coarse_ticker.nanos.load(std::memory_order_relaxed);
  while (seen < nanos && !detail::g_coarse_ticker.nanos.compare_exchange_weak(
                             seen, nanos, std::memory_order_release, std::memory_order_relaxed)) {
  }
}

class TickerThread {
 public:
  static constexpr auto kTick = std::chrono::milliseconds(1);
  static constexpr int kIdleTicksBeforeParking = 1000;

  TimePoint wake() noexcept {
    const std::int64_t now = monotonic_nanos();
    try {
      std::lock_guard lock(mu_);
      publish_coarse(now);
      detail::g_coarse_ticker.demanded.store(true, std::memory_order_relaxed);
      detail::g_coarse_ticker.parked.store(false, std::memory_order_release);
      if (!thread_running_) {
        std::thread([this] { run(); }).detach();
        thread_running_ = true;
      } else {
        cv_.notify_one();
      }
    } catch (...) {
      // No thread to be had: stay parked, so every reading takes the precise clock.
      detail::g_coarse_ticker.parked.store(true, std::memory_order_release);
    }
    return TimePoint(Duration(now));
  }

  void after_fork_in_child() noexcept {
    // The ticker thread does not exist in the child: start over. The mutex may have been held
    // by the parent's ticker at the fork, so it is rebuilt, not unlocked.
    new (&mu_) std::mutex();
    new (&cv_) std::condition_variable();
    thread_running_ = false;
    detail::g_coarse_ticker.parked.store(true, std::memory_order_release);
  }

 private:
  void run() {
    int idle_ticks = 0;
    std::unique_lock lock(mu_);
    while (true) {
      lock.unlock();
      std::this_thread::sleep_for(kTick);
      publish_coarse(monotonic_nanos());
      lock.lock();
      if (detail::g_coarse_ticker.demanded.exchange(false, std::memory_order_relaxed)) {
        idle_ticks = 0;
      } else if (++idle_ticks >= kIdleTicksBeforeParking) {
        detail::g_coarse_ticker.parked.store(true, std::memory_order_release);
        cv_.wait(lock,
                 [] { return !detail::g_coarse_ticker.parked.load(std::memory_order_acquire); });
        idle_ticks = 0;
      }
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  bool thread_running_ = false;  // guarded by mu_
};

// Never destroyed: the detached ticker may still be running while static destructors run.
TickerThread& ticker() {
  static TickerThread* const instance = [] {
    auto* t = new TickerThread();
    ::pthread_atfork(nullptr, nullptr, [] { ticker().after_fork_in_child(); });
    return t;
  }();
  return *instance;
}

}  // namespace

detail::CoarseTicker detail::g_coarse_ticker;

TimePoint detail::wake_coarse_ticker() noexcept {
  return ticker().wake();
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
