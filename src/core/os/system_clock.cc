// SystemClock's coarse ticker and SystemSleeper: the operating-system side of clock.h.
#include "mend/core/system_clock.h"

#include <pthread.h>
#include <time.h>

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <new>
#include <thread>

#include "mend/core/thread_annotations.h"

namespace mend {
namespace {

TimePoint read_monotonic() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);  // steady_clock's own source on Linux
  return TimePoint(Duration(static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec));
}

TimePoint wake_coarse_ticker() noexcept;

// What every SystemClock's coarse reading loads. Constant-initialized, so that a coarse reading
// taken during static initialization (from another source's static) finds it ready.
constinit CoarseSource ticker_coarse_source(&wake_coarse_ticker);

// The thread that refreshes ticker_coarse_source: it publishes CLOCK_MONOTONIC every
// millisecond while someone reads, and parks after a second without readers.
class CoarseTicker {
 public:
  static constexpr auto kTick = std::chrono::milliseconds(1);
  static constexpr int kIdleTicksBeforeParking = 1000;

  TimePoint wake() noexcept {
    const TimePoint now = read_monotonic();
    try {
      MutexLock lock(mu_);
      ticker_coarse_source.publish(now);
      ticker_coarse_source.unpark();
      if (!thread_running_) {
        std::thread([this] { run(); }).detach();
        thread_running_ = true;
      } else {
        cv_.notify_one();
      }
    } catch (...) {
      // No thread to be had: stay parked, so every reading takes the precise clock.
      ticker_coarse_source.park();
    }
    return now;
  }

  // The child of a fork runs one thread: nothing to lock against, and the mutex may be held.
  void after_fork_in_child() noexcept MEND_NO_THREAD_SAFETY_ANALYSIS {
    // The ticker thread does not exist in the child: start over. The mutex may have been held
    // by the parent's ticker at the fork, so it is rebuilt, not unlocked.
    new (&mu_) Mutex();
    new (&cv_) std::condition_variable();
    thread_running_ = false;
    ticker_coarse_source.park();
  }

 private:
  void run() {
    int idle_ticks = 0;
    MutexLock lock(mu_);
    while (true) {
      lock.unlock();
      std::this_thread::sleep_for(kTick);
      ticker_coarse_source.publish(read_monotonic());
      lock.lock();
      if (ticker_coarse_source.take_demand()) {
        idle_ticks = 0;
      } else if (++idle_ticks >= kIdleTicksBeforeParking) {
        ticker_coarse_source.park();
        cv_.wait(lock.native(), [] { return !ticker_coarse_source.parked(); });
        idle_ticks = 0;
      }
    }
  }

  Mutex mu_;
  std::condition_variable cv_;
  bool thread_running_ MEND_GUARDED_BY(mu_) = false;
};

// Made on the first coarse reading, not before: a process that never takes one has no thread
// and no fork handler. Never destroyed: the detached ticker may still be running while static
// destructors run.
CoarseTicker& coarse_ticker() {
  static CoarseTicker* const instance = [] {
    auto* ticker = new CoarseTicker();
    ::pthread_atfork(nullptr, nullptr, [] { coarse_ticker().after_fork_in_child(); });
    return ticker;
  }();
  return *instance;
}

TimePoint wake_coarse_ticker() noexcept {
  return coarse_ticker().wake();
}

}  // namespace

SystemClock::SystemClock() noexcept : Clock(ticker_coarse_source) {}

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

}  // namespace mend
