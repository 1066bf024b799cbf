// SqliteStore's journal: one row per finished task, as mend's history of what it did.
#include <sqlite3.h>

#include <utility>
#include <vector>

#include "mend/store/sqlite_store.h"
#include "sqlite_store_statement.h"

namespace mend {

#define MEND_JOURNAL_COLUMNS                                                                      \
  "id, task_id, task_type, primary_agent, status, answered_by, attempts, record_id, started_at, " \
  "finished_at, outcome_json"

std::int64_t SqliteStore::append_journal(const JournalEntry& entry) {
  std::lock_guard lock(mu_);
  Statement s = prepare(
      "INSERT INTO journal (task_id, task_type, primary_agent, status, answered_by, attempts,"
      " record_id, started_at, finished_at, outcome_json)"
      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)");
  s.bind_text(1, entry.task_id);
  s.bind_text(2, entry.task_type);
  s.bind_text(3, entry.primary_agent);
  s.bind_text(4, entry.status);
  s.bind_text(5, entry.answered_by);
  s.bind_int(6, entry.attempts);
  s.bind_id_or_null(7, entry.record_id);
  s.bind_time(8, entry.started_at);
  s.bind_time(9, entry.finished_at);
  s.bind_text(10, entry.outcome_json);
  s.run();
  return sqlite3_last_insert_rowid(db_);
}

std::vector<JournalEntry> SqliteStore::journal(std::size_t limit) {
  std::lock_guard lock(mu_);
  Statement s = prepare("SELECT " MEND_JOURNAL_COLUMNS " FROM journal ORDER BY id DESC LIMIT ?1");
  s.bind_int(1, sqlite_detail::limit_value(limit));
  std::vector<JournalEntry> out;
  while (s.step()) {
    JournalEntry e;
    e.id = s.int_at(0);
    e.task_id = s.text_at(1);
    e.task_type = s.text_at(2);
    e.primary_agent = s.text_at(3);
    e.status = s.text_at(4);
    e.answered_by = s.text_at(5);
    e.attempts = sqlite_detail::clamp_to_int(s.int_at(6));
    e.record_id = s.int_at(7);
    e.started_at = s.time_at(8);
    e.finished_at = s.time_at(9);
    e.outcome_json = s.text_at(10);
    out.push_back(std::move(e));
  }
  return out;
}

#undef MEND_JOURNAL_COLUMNS

}  // namespace mend
