#include "thread_shard.h"

#include <bit>
#include <cstdint>
#include <functional>
#include <thread>

namespace mend::detail {
namespace {

// Indices taken by live threads, one bit each: 4,096 of them.
constexpr int kIndexWords = kThreadShards / 64;
std::atomic<std::uint64_t> g_indices_taken[kIndexWords];

// Gives the thread's index back when the thread exits.
struct IndexRelease {
  int index = -1;
  ~IndexRelease() {
    if (index < 0) return;
    g_indices_taken[index / 64].fetch_and(~(std::uint64_t{1} << (index % 64)),
                                          std::memory_order_release);
    // Should another thread_local's destructor record after this one, it shares shard 0 rather
    // than take an index that nothing would give back.
    t_thread_shard = 0;
  }
};
thread_local IndexRelease t_index_release;

}  // namespace

int assign_thread_shard() noexcept {
  for (int w = 0; w < kIndexWords; ++w) {
    std::uint64_t taken = g_indices_taken[w].load(std::memory_order_relaxed);
    while (taken != ~std::uint64_t{0}) {
      const int bit = std::countr_one(taken);  // the lowest free index
      // Acquire: whatever the index's last owner recorded happens before this thread's records.
      if (g_indices_taken[w].compare_exchange_weak(taken, taken | (std::uint64_t{1} << bit),
                                                   std::memory_order_acquire,
                                                   std::memory_order_relaxed)) {
        const int index = w * 64 + bit;
        t_index_release.index = index;
        t_thread_shard = index;
        return index;
      }
    }
  }
  // More than kThreadShards threads alive: share an index, for good.
  const int index =
      static_cast<int>(std::hash<std::thread::id>{}(std::this_thread::get_id()) % kThreadShards);
  t_thread_shard = index;
  return index;
}

}  // namespace mend::detail
