#include "mend/journal.h"

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

}  // namespace mend
