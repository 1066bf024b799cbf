// File: src/core/breaker_window.h (internal)
//
// The sliding windows of the failure-rate circuit breaker (mend/core/circuit_breaker.h): how many
// of the last calls, or of the calls of the last stretch of time, failed or were slow.
//
// Recording a call is on the path of every call through a failure-rate breaker, and a store to a
// cache line that another core also writes costs more than everything else the call does (on 2
// threads, 70 to 90 ns a call per thread where one alone takes 10). So a thread records only into
// a shard of its own: the threads alive at once get distinct shards, up to kWindowShards of them
// (window_shard()), and what a window holds is the sum over its shards, taken when a decision
// needs it: after a failure or a slow call, and for snapshots. A success costs a load and a store
// to a line that no other thread writes, and no lock, however many threads share the breaker.
//
//   CountWindow (the last `size` calls). Each shard counts its calls. The calls are numbered in
//     the order the window learns of them, over all shards: a call's position is the number of
//     calls counted before it. Failures and slow calls are also marked, with the breaker's mutex
//     held, in a ring of `size` slots by position; every position left unmarked is a success, so
//     a success writes nothing but its count. The window is the last `size` positions.
//   TimeWindow (`duration` in `buckets` buckets of duration / buckets, aligned on multiples of
//     it). Each shard has its own ring of buckets of calls, failures and slow calls. The window is
//     the buckets of the last `buckets` periods (the current one included), summed over shards.
//
// Exactness. On one thread, both windows are exact. On several, each thread writes only its own
// shard, so no call is lost while at most kWindowShards threads record at once; beyond that, two
// threads may share a shard and a count may be lost now and then (losses do not depend on the
// outcome, so the rates stay unbiased). Calls on different threads have no order of their own:
// in a count window, a failure takes the latest position that no other failure or slow call
// holds, so among calls that ended at about the same time, which leaves the window first is
// arbitrary. A call recorded while the window is being reset may land on either side of it.
//
// Thread-safety: record() may run on any thread at any time, without a lock. note(), totals()
// and reset() must be called with the breaker's mutex held (they change the count window's
// marks), and may run at the same time as record() on other threads.
#ifndef MEND_SRC_CORE_BREAKER_WINDOW_H_
#define MEND_SRC_CORE_BREAKER_WINDOW_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>

#include "mend/core/circuit_breaker.h"
#include "mend/core/clock.h"
#include "thread_shard.h"

namespace mend::detail {

// Bits of a recorded outcome.
inline constexpr std::uint8_t kCall = 1;
inline constexpr std::uint8_t kFailed = 2;
inline constexpr std::uint8_t kSlow = 4;

struct WindowTotals {
  int calls = 0;
  int failures = 0;
  int slow = 0;
};

// A shard's alignment: what a thread writes is at least this far from what another writes.
inline constexpr std::size_t kShardAlign = 128;

// Shards per window. The pointers to them take 512 bytes; a shard is allocated when a thread
// first records into it.
inline constexpr std::size_t kWindowShards = 64;

// This thread's window shard (src/core/thread_shard.h): distinct for the threads alive at once, up
// to kWindowShards of them.
inline std::size_t window_shard() noexcept {
  return thread_shard() % kWindowShards;
}

// This thread's shard of `shards`, made by `add(index)` (out of line, once per index) on first
// use.
template <class Shard, class Add>
inline Shard& local_shard(std::atomic<Shard*> (&shards)[kWindowShards], Add add) noexcept {
  const std::size_t i = window_shard();
  Shard* s = shards[i].load(std::memory_order_acquire);
  if (s == nullptr) [[unlikely]]
    s = add(i);
  return *s;
}

}  // namespace mend::detail

namespace mend {

class CircuitBreaker::Window {
 public:
  virtual ~Window() = default;
  // Any thread, no lock. `outcome`: kCall, with kFailed and kSlow as they apply.
  virtual void record(TimePoint now, std::uint8_t outcome) noexcept = 0;
  // With the breaker's mutex held, after this thread's record() of a failure or a slow call.
  virtual void note(std::uint8_t outcome) noexcept = 0;
  // With the breaker's mutex held: the window as of `now` (time windows).
  virtual detail::WindowTotals totals(TimePoint now) noexcept = 0;
  // With the breaker's mutex held: forget every call.
  virtual void reset() noexcept = 0;
};

namespace detail {

class CountWindow final : public CircuitBreaker::Window {
 public:
  explicit CountWindow(int size);
  ~CountWindow() override;

  void record(TimePoint, std::uint8_t) noexcept override { bump(local().calls); }
  void note(std::uint8_t outcome) noexcept override;
  WindowTotals totals(TimePoint now) noexcept override;
  void reset() noexcept override;

 private:
  // 128 bytes, not 64: Intel's L2 prefetcher fetches lines in pairs, so two shards' counts on
  // the two lines of one pair may still slow each other down.
  struct alignas(kShardAlign) Shard {
    std::atomic<std::uint64_t> calls{0};
  };
  Shard& local() noexcept {
    return local_shard(shards_, [this](std::size_t i) { return add_shard(i); });
  }
  Shard* add_shard(std::size_t i) noexcept;
  // Calls counted over all shards. May be below head_ (a failure took one more position, or a
  // shared shard's count went back): advance() never moves the window back.
  std::uint64_t counted() const noexcept;
  // Moves the window's end to `end`: positions from head_ to `end` are successes until marked.
  void advance(std::uint64_t end) noexcept;
  void unmark(std::size_t slot) noexcept;

  const std::size_t size_;
  std::atomic<Shard*> shards_[kWindowShards] = {};

  // The breaker's mutex guards the rest. On lines of their own: note() writes them.
  alignas(64) std::unique_ptr<std::uint8_t[]> marks_;  // by position % size_: kFailed | kSlow
  std::uint64_t head_ = 0;     // the window is positions [max(base_, head_ - size_), head_)
  std::uint64_t base_ = 0;     // the first position after the last reset
  std::size_t head_slot_ = 0;  // head_ % size_
  int failures_ = 0;           // marks in the window
  int slow_ = 0;
};

class TimeWindow final : public CircuitBreaker::Window {
 public:
  TimeWindow(Duration duration, int buckets);
  ~TimeWindow() override;

  void record(TimePoint now, std::uint8_t outcome) noexcept override {
    Shard& s = local();
    const std::int64_t t = now.time_since_epoch().count();
    // The bucket this shard recorded into last, while `t` is in its period: no division.
    if (t < s.start.load(std::memory_order_relaxed) || t >= s.end.load(std::memory_order_relaxed))
        [[unlikely]] {
      move_to(s, t);
    }
    Bucket& b = s.buckets()[s.index.load(std::memory_order_relaxed)];
    const std::int64_t epoch = s.epoch.load(std::memory_order_relaxed);
    // Another period's (older) counts, or a reset's: start the bucket afresh.
    if (b.epoch.load(std::memory_order_relaxed) < epoch) [[unlikely]]
      restart(b, epoch);
    bump(b.calls);
    if (outcome & kFailed) bump(b.failures);
    if (outcome & kSlow) bump(b.slow);
  }
  void note(std::uint8_t) noexcept override {}
  WindowTotals totals(TimePoint now) noexcept override;
  void reset() noexcept override;

 private:
  static constexpr std::int64_t kNever = std::numeric_limits<std::int64_t>::min();
  struct Bucket {
    std::atomic<std::int64_t> epoch{kNever};  // the period counted: time / bucket_ns_, floored
    std::atomic<std::uint32_t> calls{0};
    std::atomic<std::uint32_t> failures{0};
    std::atomic<std::uint32_t> slow{0};
  };
  // A shard: this header, then its count_ buckets, in one allocation of whole pairs of cache
  // lines (kShardAlign).
  struct alignas(kShardAlign) Shard {
    // The period of the bucket the shard's thread recorded into last: [start, end), as epoch,
    // at buckets()[index].
    std::atomic<std::int64_t> start{0};
    std::atomic<std::int64_t> end{0};
    std::atomic<std::int64_t> epoch{0};
    std::atomic<std::size_t> index{0};
    Bucket* buckets() noexcept { return reinterpret_cast<Bucket*>(this + 1); }
  };
  Shard& local() noexcept {
    return local_shard(shards_, [this](std::size_t i) { return add_shard(i); });
  }
  Shard* add_shard(std::size_t i) noexcept;
  Shard* new_shard() const noexcept;  // nullptr when out of memory
  static void delete_shard(Shard* s) noexcept;
  void move_to(Shard& s, std::int64_t t) const noexcept;
  static void restart(Bucket& b, std::int64_t epoch) noexcept;
  std::int64_t epoch_of(std::int64_t t) const noexcept {
    return t / bucket_ns_ - (t % bucket_ns_ < 0 ? 1 : 0);
  }

  const int count_;
  const std::int64_t bucket_ns_;
  std::atomic<Shard*> shards_[kWindowShards] = {};
};

}  // namespace detail
}  // namespace mend

#endif  // MEND_SRC_CORE_BREAKER_WINDOW_H_
