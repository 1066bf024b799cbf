// File: mend/store/journal.h
//
// The task journal: one entry per task the workflow ran, with its status, the agent that
// answered, the number of attempts, the escalation record and the whole outcome as JSON, so
// that "what happened to task X?" has an answer after a restart.
//
//   mend::StoreTaskJournal journal(store, clock);
//   mend::Workflow workflow(agents, {.escalations = &escalator, .journal = &journal});
//
// A journal write that fails (disk full) is counted in failures() and otherwise ignored: the task's
// outcome stands and was returned to the caller; losing its journal line must not fail it.
//
// StoreTaskJournal writes each entry in its own transaction, on the caller's thread.
// BatchingTaskJournal (what `mend serve` uses) queues entries and a writer thread of its own
// appends them in one transaction per batch (group commit): a busy daemon pays one SQLite commit
// per batch instead of one per task, and its I/O threads never wait for the disk.
//
//   mend::BatchingTaskJournal journal(store, clock);
//   ...
//   journal.flush();  // everything recorded so far is in the store
//
// Thread-safety: both are safe to use from many threads at once (the store serialises).
#ifndef MEND_STORE_JOURNAL_H_
#define MEND_STORE_JOURNAL_H_

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <thread>
#include <vector>

#include "mend/core/clock.h"
#include "mend/core/store.h"
#include "mend/core/thread_annotations.h"
#include "mend/core/workflow.h"

namespace mend {

// The journal entry for an outcome; finished_at is `now`, started_at now minus the elapsed time.
JournalEntry journal_entry(const Task& task, const Outcome& outcome, WallTime now);

class StoreTaskJournal final : public TaskJournal {
 public:
  StoreTaskJournal(Store& store, const Clock& clock) : store_(store), clock_(clock) {}
  void record(const Task& task, const Outcome& outcome) noexcept override;
  std::int64_t failures() const noexcept { return failures_.load(std::memory_order_relaxed); }

 private:
  Store& store_;
  const Clock& clock_;
  std::atomic<std::int64_t> failures_{0};
};

// Queues entries and writes them from a thread of its own, a batch per transaction. An entry is
// in the store at most a batch's write after it was queued; flush() waits for that, and the
// destructor writes everything still queued before it returns. When `max_queued` entries wait
// (the disk is far behind), try_record() returns false and record() waits for room: the journal
// slows its callers down rather than lose entries or grow without bound, and the async driver
// then waits on its blocking executor, never on an I/O thread. A batch whose transaction fails
// is written again an entry at a time, so one bad entry or a busy moment costs only what fails.
class BatchingTaskJournal final : public TaskJournal {
 public:
  struct Options {
    std::size_t max_batch = 1024;    // entries per transaction at most
    std::size_t max_queued = 10000;  // entries waiting at most (each holds its outcome's JSON)
  };
  BatchingTaskJournal(Store& store, const Clock& clock) : BatchingTaskJournal(store, clock, {}) {}
  BatchingTaskJournal(Store& store, const Clock& clock, Options options);
  ~BatchingTaskJournal() override;
  BatchingTaskJournal(const BatchingTaskJournal&) = delete;
  BatchingTaskJournal& operator=(const BatchingTaskJournal&) = delete;

  void record(const Task& task, const Outcome& outcome) noexcept override;
  bool try_record(const Task& task, const Outcome& outcome) noexcept override;
  // Waits until every entry recorded before the call has been written (or has failed).
  void flush();
  std::int64_t failures() const noexcept { return failures_.load(std::memory_order_relaxed); }
  // Entries written, and transactions that wrote them (for tests and metrics).
  std::int64_t written() const noexcept { return written_.load(std::memory_order_relaxed); }
  std::int64_t batches() const noexcept { return batches_.load(std::memory_order_relaxed); }

 private:
  bool enqueue(const Task& task, const Outcome& outcome, bool wait_for_room);
  void write_loop() noexcept;
  void write_batch(std::vector<JournalEntry>& batch) noexcept;

  Store& store_;
  const Clock& clock_;
  const Options options_;
  Mutex mu_;
  std::condition_variable work_;  // the writer waits for entries
  std::condition_variable room_;  // record() waits for room, flush() for the writer's progress
  std::deque<JournalEntry> queue_ MEND_GUARDED_BY(mu_);
  // queue_.size(), written under mu_ and read without it: try_record() skips building an entry
  // that a full queue would refuse (a full queue is the steady state while the disk is behind).
  std::atomic<std::size_t> queued_now_{0};
  std::uint64_t queued_total_ MEND_GUARDED_BY(mu_) = 0;  // entries ever queued
  std::uint64_t done_total_ MEND_GUARDED_BY(mu_) = 0;    // entries ever written or failed
  bool stopping_ MEND_GUARDED_BY(mu_) = false;
  std::atomic<std::int64_t> failures_{0};
  std::atomic<std::int64_t> written_{0};
  std::atomic<std::int64_t> batches_{0};
  std::thread writer_;  // last: started once everything above exists
};

}  // namespace mend

#endif  // MEND_STORE_JOURNAL_H_
