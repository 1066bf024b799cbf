#include "mend/store/journal.h"

#include <algorithm>
#include <utility>

namespace mend {

JournalEntry journal_entry(const Task& task, const Outcome& outcome, WallTime now) {
  JournalEntry e;
  e.task_id = task.id;
  e.task_type = task.type;
  e.primary_agent = task.agent;
  e.status = std::string(to_string(outcome.status));
  e.answered_by = outcome.answered_by;
  e.attempts = static_cast<int>(outcome.attempts.size());
  if (outcome.escalation) e.record_id = outcome.escalation->record_id;
  e.finished_at = now;
  e.started_at = now - std::chrono::duration_cast<WallTime::duration>(outcome.elapsed);
  e.outcome_json = outcome.to_json();
  return e;
}

void StoreTaskJournal::record(const Task& task, const Outcome& outcome) noexcept {
  try {
    store_.append_journal(journal_entry(task, outcome, clock_.wall_now()));
  } catch (...) {
    failures_.fetch_add(1, std::memory_order_relaxed);
  }
}

BatchingTaskJournal::BatchingTaskJournal(Store& store, const Clock& clock, Options options)
    : store_(store),
      clock_(clock),
      options_{std::max<std::size_t>(1, options.max_batch),
               std::max<std::size_t>(1, options.max_queued)},
      writer_([this] { write_loop(); }) {}

BatchingTaskJournal::~BatchingTaskJournal() {
  {
    MutexLock lock(mu_);
    stopping_ = true;
  }
  work_.notify_one();
  writer_.join();  // the writer drains the queue before it leaves
}

bool BatchingTaskJournal::enqueue(const Task& task, const Outcome& outcome, bool wait_for_room) {
  // A glance without the lock: the check under it below decides.
  if (!wait_for_room && queued_now_.load(std::memory_order_relaxed) >= options_.max_queued) {
    return false;
  }
  // Built outside the lock, on the caller's thread: the entry holds copies, so the writer never
  // touches the caller's task or outcome.
  JournalEntry entry = journal_entry(task, outcome, clock_.wall_now());
  MutexLock lock(mu_);
  if (queue_.size() >= options_.max_queued) {
    if (!wait_for_room) return false;
    room_.wait(lock.native(),
               [&]() MEND_REQUIRES(mu_) { return queue_.size() < options_.max_queued; });
  }
  const bool writer_idle = queue_.empty();
  queue_.push_back(std::move(entry));
  queued_now_.store(queue_.size(), std::memory_order_relaxed);
  ++queued_total_;
  lock.unlock();
  // A busy writer comes back for the queue by itself: wake it only when it may be asleep, so
  // that a stream of tasks costs no wake-up per task.
  if (writer_idle) work_.notify_one();
  return true;
}

bool BatchingTaskJournal::try_record(const Task& task, const Outcome& outcome) noexcept {
  try {
    return enqueue(task, outcome, /*wait_for_room=*/false);
  } catch (...) {
    return false;  // the caller then tries record()
  }
}

void BatchingTaskJournal::record(const Task& task, const Outcome& outcome) noexcept {
  try {
    enqueue(task, outcome, /*wait_for_room=*/true);
  } catch (...) {
    failures_.fetch_add(1, std::memory_order_relaxed);
  }
}

void BatchingTaskJournal::flush() {
  MutexLock lock(mu_);
  const std::uint64_t target = queued_total_;
  room_.wait(lock.native(), [&]() MEND_REQUIRES(mu_) { return done_total_ >= target; });
}

void BatchingTaskJournal::write_loop() noexcept {
  std::vector<JournalEntry> batch;
  MutexLock lock(mu_);
  for (;;) {
    work_.wait(lock.native(), [&]() MEND_REQUIRES(mu_) { return !queue_.empty() || stopping_; });
    if (queue_.empty()) return;  // stopping, and everything is written
    const std::size_t n = std::min(queue_.size(), options_.max_batch);
    try {
      batch.reserve(n);
      for (std::size_t i = 0; i < n; ++i) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    } catch (...) {
      // Out of memory while moving entries: what was moved is written below, what was not stays
      // queued for the next round.
    }
    queued_now_.store(queue_.size(), std::memory_order_relaxed);
    const std::size_t taken = batch.size();
    lock.unlock();
    write_batch(batch);
    lock.lock();
    done_total_ += taken;
    room_.notify_all();
  }
}

void BatchingTaskJournal::write_batch(std::vector<JournalEntry>& batch) noexcept {
  try {
    store_.transaction([&] {
      for (const JournalEntry& entry : batch) store_.append_journal(entry);
    });
    written_.fetch_add(static_cast<std::int64_t>(batch.size()), std::memory_order_relaxed);
    batches_.fetch_add(1, std::memory_order_relaxed);
  } catch (...) {
    // The whole transaction was rolled back: write the entries one by one, so that only those
    // that fail again are lost.
    for (const JournalEntry& entry : batch) {
      try {
        store_.append_journal(entry);
        written_.fetch_add(1, std::memory_order_relaxed);
      } catch (...) {
        failures_.fetch_add(1, std::memory_order_relaxed);
      }
    }
  }
  batch.clear();
}

}  // namespace mend
