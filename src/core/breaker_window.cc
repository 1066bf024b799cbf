#include "breaker_window.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <functional>
#include <new>
#include <thread>

namespace mend::detail {

// --- CountWindow --------------------------------------------------------------------------------

CountWindow::CountWindow(int size)
    : size_(static_cast<std::size_t>(size)), marks_(new std::uint8_t[size_]()) {
  shards_[0].store(new Shard, std::memory_order_release);
}

CountWindow::~CountWindow() {
  for (auto& s : shards_) delete s.load(std::memory_order_acquire);
}

CountWindow::Shard* CountWindow::add_shard(std::size_t i) noexcept {
  Shard* fresh = new (std::nothrow) Shard;
  if (fresh == nullptr) return shards_[0].load(std::memory_order_acquire);  // share the first
  Shard* seen = nullptr;
  if (shards_[i].compare_exchange_strong(seen, fresh, std::memory_order_acq_rel,
                                         std::memory_order_acquire)) {
    return fresh;
  }
  delete fresh;  // another thread of the same shard (past 64 threads) was first
  return seen;
}

std::uint64_t CountWindow::counted() const noexcept {
  std::uint64_t n = 0;
  for (const auto& s : shards_) {
    if (const Shard* p = s.load(std::memory_order_acquire)) {
      n += p->calls.load(std::memory_order_relaxed);
    }
  }
  return n;
}

void CountWindow::unmark(std::size_t slot) noexcept {
  const std::uint8_t m = marks_[slot];
  if (m == 0) return;
  failures_ -= (m & kFailed) != 0;
  slow_ -= (m & kSlow) != 0;
  marks_[slot] = 0;
}

void CountWindow::advance(std::uint64_t end) noexcept {
  // A shared shard's count can go back (two threads load 5, one stores 6 after the other's 7):
  // the window never does.
  if (end <= head_) return;
  if (end - head_ >= size_) {
    std::memset(marks_.get(), 0, size_);
    failures_ = slow_ = 0;
    head_slot_ = static_cast<std::size_t>(end % size_);
  } else {
    // The slots of the new positions held the positions that now leave the window.
    for (std::uint64_t p = head_; p < end; ++p) {
      unmark(head_slot_);
      if (++head_slot_ == size_) head_slot_ = 0;
    }
  }
  head_ = end;
}

void CountWindow::note(std::uint8_t outcome) noexcept {
  const auto mark = static_cast<std::uint8_t>(outcome & (kFailed | kSlow));
  if (mark == 0) return;
  advance(counted());
  // The call counted itself before this, so its position is in the window: the last one, unless
  // another failure or slow call took that first (it was counted after this one, or marked
  // before). Then the latest free position, looking back as far as there can be calls in flight
  // on distinct shards. None free: its count was lost to a shared shard, and it takes one more.
  const std::uint64_t lowest = std::max(base_, head_ >= size_ ? head_ - size_ : 0);
  const std::uint64_t reach = std::min<std::uint64_t>(head_ - lowest, kWindowShards);
  std::size_t slot = head_slot_;
  bool found = false;
  for (std::uint64_t d = 0; d < reach && !found; ++d) {
    slot = slot == 0 ? size_ - 1 : slot - 1;
    found = marks_[slot] == 0;
  }
  if (!found) {
    advance(head_ + 1);
    slot = head_slot_ == 0 ? size_ - 1 : head_slot_ - 1;
    unmark(slot);
  }
  marks_[slot] = mark;
  failures_ += (mark & kFailed) != 0;
  slow_ += (mark & kSlow) != 0;
}

WindowTotals CountWindow::totals(TimePoint) noexcept {
  advance(counted());
  const int calls = static_cast<int>(std::min<std::uint64_t>(head_ - base_, size_));
  return {calls, std::min(failures_, calls), std::min(slow_, calls)};
}

void CountWindow::reset() noexcept {
  advance(counted());
  base_ = head_;
  std::memset(marks_.get(), 0, size_);
  failures_ = slow_ = 0;
}

// --- TimeWindow ---------------------------------------------------------------------------------

TimeWindow::TimeWindow(Duration duration, int buckets)
    : count_(buckets), bucket_ns_(duration.count() / buckets) {
  Shard* first = new_shard();
  if (first == nullptr) throw std::bad_alloc();
  shards_[0].store(first, std::memory_order_release);
}

TimeWindow::~TimeWindow() {
  for (auto& s : shards_) {
    if (Shard* p = s.load(std::memory_order_acquire)) delete_shard(p);
  }
}

TimeWindow::Shard* TimeWindow::new_shard() const noexcept {
  static_assert(sizeof(Shard) % kShardAlign == 0 && alignof(Bucket) <= alignof(Shard));
  const std::size_t bytes =
      (sizeof(Shard) + static_cast<std::size_t>(count_) * sizeof(Bucket) + kShardAlign - 1) /
      kShardAlign * kShardAlign;
  void* memory = ::operator new (bytes, std::align_val_t{kShardAlign}, std::nothrow);
  if (memory == nullptr) return nullptr;
  Shard* s = new (memory) Shard;
  for (int i = 0; i < count_; ++i) new (&s->buckets()[i]) Bucket;
  return s;
}

void TimeWindow::delete_shard(Shard* s) noexcept {
  // Shard and Bucket hold only atomics of integers: nothing to destroy.
  ::operator delete (s, std::align_val_t{kShardAlign});
}

TimeWindow::Shard* TimeWindow::add_shard(std::size_t i) noexcept {
  Shard* fresh = new_shard();
  if (fresh == nullptr) return shards_[0].load(std::memory_order_acquire);
  Shard* seen = nullptr;
  if (shards_[i].compare_exchange_strong(seen, fresh, std::memory_order_acq_rel,
                                         std::memory_order_acquire)) {
    return fresh;
  }
  delete_shard(fresh);
  return seen;
}

void TimeWindow::move_to(Shard& s, std::int64_t t) const noexcept {
  const std::int64_t epoch = epoch_of(t);
  const std::int64_t start = epoch * bucket_ns_;
  s.start.store(start, std::memory_order_relaxed);
  s.end.store(start + bucket_ns_, std::memory_order_relaxed);
  s.epoch.store(epoch, std::memory_order_relaxed);
  s.index.store(static_cast<std::size_t>((epoch % count_ + count_) % count_),
                std::memory_order_relaxed);
}

void TimeWindow::restart(Bucket& b, std::int64_t epoch) noexcept {
  b.calls.store(0, std::memory_order_relaxed);
  b.failures.store(0, std::memory_order_relaxed);
  b.slow.store(0, std::memory_order_relaxed);
  b.epoch.store(epoch, std::memory_order_release);
}

WindowTotals TimeWindow::totals(TimePoint now) noexcept {
  const std::int64_t epoch = epoch_of(now.time_since_epoch().count());
  WindowTotals t;
  for (const auto& slot : shards_) {
    Shard* s = slot.load(std::memory_order_acquire);
    if (s == nullptr) continue;
    for (int i = 0; i < count_; ++i) {
      const Bucket& b = s->buckets()[i];
      const std::int64_t e = b.epoch.load(std::memory_order_acquire);
      if (e > epoch - count_ && e <= epoch) {
        t.calls += static_cast<int>(b.calls.load(std::memory_order_relaxed));
        t.failures += static_cast<int>(b.failures.load(std::memory_order_relaxed));
        t.slow += static_cast<int>(b.slow.load(std::memory_order_relaxed));
      }
    }
  }
  return t;
}

void TimeWindow::reset() noexcept {
  for (const auto& slot : shards_) {
    Shard* s = slot.load(std::memory_order_acquire);
    if (s == nullptr) continue;
    for (int i = 0; i < count_; ++i) {
      Bucket& b = s->buckets()[i];
      // The owner's next record() sees an epoch older than its own and starts the bucket afresh.
      b.epoch.store(kNever, std::memory_order_relaxed);
      b.calls.store(0, std::memory_order_relaxed);
      b.failures.store(0, std::memory_order_relaxed);
      b.slow.store(0, std::memory_order_relaxed);
    }
  }
}

}  // namespace mend::detail
