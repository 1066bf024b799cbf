// File: src/core/thread_shard.h (internal)
//
// A small index per live thread, for counters that every thread writes on a call's path (the
// failure-rate breaker's windows, src/core/breaker_window.h; the retry budget's stripes,
// mend/core/retry_budget.h): a store to a cache line that another core also writes costs more
// than everything else such a call does, so each thread writes a shard of its own, chosen by its
// index, and readers sum the shards.
//
// The index is the lowest one no live thread holds, assigned on the thread's first use and given
// back when it exits, so that the threads alive at once hold distinct indices (a process of 2
// threads uses 0 and 1, however many threads came and went before). Beyond kThreadShards threads
// alive at once, the extra ones share indices (hashed), for good.
//
//   Shard& mine = shards[detail::thread_shard() % shards.size()];
//   detail::bump(mine.calls);   // only this thread writes it (but for shared indices)
//
// Thread-safety: thread_shard() is safe from any thread; bump() is a relaxed load and store, not
// a locked add: concurrent bumps of one counter (threads sharing an index) may lose a count.
#ifndef MEND_SRC_CORE_THREAD_SHARD_H_
#define MEND_SRC_CORE_THREAD_SHARD_H_

#include <atomic>
#include <cstddef>

namespace mend::detail {

// Indices handed out before threads share them.
inline constexpr int kThreadShards = 4096;

// This thread's index, -1 until assigned. constinit and inline, so that reading it is one load (no
// thread_local wrapper call).
inline thread_local constinit int t_thread_shard = -1;
int assign_thread_shard() noexcept;
inline std::size_t thread_shard() noexcept {
  int i = t_thread_shard;
  if (i < 0) [[unlikely]]
    i = assign_thread_shard();
  return static_cast<std::size_t>(i);
}

// Relaxed loads and stores: the owner of a shard is its only writer (but for shared indices), and
// other threads only read. A plain increment, not a locked one: a locked add costs as much as the
// rest of the call.
template <class T>
inline void bump(std::atomic<T>& a, T by = 1) noexcept {
  a.store(a.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);
}

}  // namespace mend::detail

#endif  // MEND_SRC_CORE_THREAD_SHARD_H_
