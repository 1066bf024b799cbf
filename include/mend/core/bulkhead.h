// File: mend/core/bulkhead.h
//
// A bulkhead caps how many calls run at once against one dependency, so that a slow dependency
// ties up at most max_concurrent threads (or connections) instead of all of them. Calls beyond the
// cap wait in a bounded FIFO queue for at most max_wait; beyond the queue they are rejected at
// once with a clear error (connection_pool_exhausted, which the specification retries).
//
//   auto bulkhead = std::make_shared<mend::Bulkhead>("search",
//   mend::BulkheadOptions{.max_concurrent = 8}); if (bulkhead->enter({}) ==
//   mend::Bulkhead::Admission::admitted) {
//     call();
//     bulkhead->leave();
//   }
// The executor (mend/core/pipeline.h) pairs enter and leave for you.
//
// Thread-safety: all methods are safe from many threads. enter() without waiters is one CAS; a
// waiter blocks on a condition variable (real time: the bulkhead waits on behalf of a thread, it
// does not decide about time) and wakes in arrival order.
#ifndef MEND_CORE_BULKHEAD_H_
#define MEND_CORE_BULKHEAD_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <stop_token>
#include <string>

#include "mend/core/clock.h"
#include "mend/core/error.h"
#include "mend/core/thread_annotations.h"

namespace mend {

struct BulkheadOptions {
  int max_concurrent = 25;  // Resilience4j's default
  int max_queue = 0;        // callers allowed to wait; 0: reject at once when full
  Duration max_wait{};      // how long a queued caller waits before it is rejected
};

class Bulkhead {
 public:
  enum class Admission : std::uint8_t { admitted, queue_full, timed_out, cancelled };

  // Throws std::invalid_argument when max_concurrent < 1 or max_queue < 0.
  Bulkhead(std::string name, BulkheadOptions options);

  // Admits without waiting, or refuses. Never jumps ahead of callers already waiting.
  bool try_enter() noexcept;
  // Admits, waiting in the queue up to max_wait when there is room in it.
  Admission enter(const std::stop_token& stop);
  // Ends a call admitted by try_enter() or enter().
  void leave() noexcept;

  // The error value for a refusal: connection_pool_exhausted/medium, stop bulkhead_full.
  Error rejection(Admission admission) const;

  int in_use() const noexcept { return in_use_.load(std::memory_order_relaxed); }
  int waiting() const noexcept { return waiting_.load(std::memory_order_relaxed); }
  const std::string& name() const noexcept { return name_; }
  const BulkheadOptions& options() const noexcept { return options_; }

 private:
  bool try_take() noexcept;

  const std::string name_;
  const BulkheadOptions options_;
  alignas(64) std::atomic<int> in_use_{0};
  alignas(64) std::atomic<int> waiting_{0};
  Mutex mu_;
  std::condition_variable_any cv_;
  std::deque<std::uint64_t> queue_ MEND_GUARDED_BY(mu_);  // tickets in arrival order
  std::uint64_t next_ticket_ MEND_GUARDED_BY(mu_) = 0;
};

}  // namespace mend

#endif  // MEND_CORE_BULKHEAD_H_
