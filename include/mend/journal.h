// File: mend/journal.h
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
// Thread-safety: safe to use from many threads at once (the store serialises).
#ifndef MEND_JOURNAL_H_
#define MEND_JOURNAL_H_

#include <atomic>
#include <cstdint>

#include "mend/clock.h"
#include "mend/store.h"
#include "mend/workflow.h"

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

}  // namespace mend

#endif  // MEND_JOURNAL_H_
