// SqliteStore's tasks: the tasks mend serve accepted (written in batches, loaded back on a
// restart, pruned), and the next_task_number counter.
#include <sqlite3.h>

#include <optional>
#include <string>
#include <vector>

#include "mend/store/sqlite_store.h"
#include "sqlite_store_statement.h"

namespace mend {

#define MEND_TASK_COLUMNS                                                                  \
  "id, idempotency_key, request_digest, type, agent, request_json, done, call_in_flight, " \
  "attempts, submitted_at, deadline_at, finished_at, status, outcome_json"

StoredTask SqliteStore::read_task_row(Statement& row) const {
  StoredTask t;
  t.id = row.text_at(0);
  t.idempotency_key = row.text_at(1);
  t.request_digest = row.text_at(2);
  t.type = row.text_at(3);
  t.agent = row.text_at(4);
  t.request_json = row.text_at(5);
  t.done = row.int_at(6) != 0;
  t.call_in_flight = row.int_at(7) != 0;
  t.attempts = sqlite_detail::clamp_to_int(row.int_at(8));
  t.submitted_at = row.time_at(9);
  t.deadline_at = row.optional_time_at(10);
  t.finished_at = row.optional_time_at(11);
  t.status = row.text_at(12);
  t.outcome_json = row.text_at(13);
  return t;
}

std::vector<std::size_t> SqliteStore::write_tasks(const std::vector<TaskWrite>& writes,
                                                  std::int64_t next_task_number) {
  std::vector<std::size_t> refused;
  transaction([&] {
    for (std::size_t i = 0; i < writes.size(); ++i) {
      const StoredTask& t = writes[i].task;
      switch (writes[i].kind) {
        case TaskWrite::Kind::accept: {
          // OR IGNORE: a stored id or key refuses the insert (counted by changes()), nothing else.
          Statement s = prepare(
              "INSERT OR IGNORE INTO tasks (id, idempotency_key, request_digest, type, agent,"
              " request_json, done, call_in_flight, attempts, submitted_at, deadline_at,"
              " finished_at, status, outcome_json)"
              " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)");
          s.bind_text(1, t.id);
          if (t.idempotency_key.empty()) {
            s.bind_null(2);
          } else {
            s.bind_text(2, t.idempotency_key);
          }
          s.bind_text(3, t.request_digest);
          s.bind_text(4, t.type);
          s.bind_text(5, t.agent);
          s.bind_text(6, t.done ? std::string() : t.request_json);
          s.bind_int(7, t.done ? 1 : 0);
          s.bind_int(8, t.call_in_flight ? 1 : 0);
          s.bind_int(9, t.attempts);
          s.bind_time(10, t.submitted_at);
          s.bind_time(11, t.deadline_at);
          s.bind_time(12, t.finished_at);
          s.bind_text(13, t.status);
          s.bind_text(14, t.outcome_json);
          s.run();
          if (sqlite3_changes(db_) == 0) refused.push_back(i);
          break;
        }
        case TaskWrite::Kind::progress: {
          Statement s = prepare(
              "UPDATE tasks SET call_in_flight = ?2, attempts = ?3 WHERE id = ?1 AND done = 0");
          s.bind_text(1, t.id);
          s.bind_int(2, t.call_in_flight ? 1 : 0);
          s.bind_int(3, t.attempts);
          s.run();
          break;
        }
        case TaskWrite::Kind::finish: {
          Statement s = prepare(
              "UPDATE tasks SET done = 1, request_json = '', call_in_flight = 0, attempts = ?2,"
              " status = ?3, outcome_json = ?4, finished_at = ?5 WHERE id = ?1");
          s.bind_text(1, t.id);
          s.bind_int(2, t.attempts);
          s.bind_text(3, t.status);
          s.bind_text(4, t.outcome_json);
          s.bind_time(5, t.finished_at.value_or(t.submitted_at));
          s.run();
          if (writes[i].journal) append_journal(*writes[i].journal);
          break;
        }
      }
    }
    Statement counter = prepare(
        "INSERT INTO counters (name, value) VALUES ('next_task_number', ?1)"
        " ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)");
    counter.bind_int(1, next_task_number);
    counter.run();
  });
  return refused;
}

std::vector<StoredTask> SqliteStore::load_tasks(std::size_t finished) {
  std::lock_guard lock(mu_);
  std::vector<StoredTask> out;
  {
    Statement s = prepare("SELECT " MEND_TASK_COLUMNS
                          " FROM ("
                          " SELECT * FROM tasks WHERE done = 0"
                          " UNION ALL"
                          " SELECT * FROM (SELECT * FROM tasks WHERE done = 1"
                          "   ORDER BY finished_at DESC, seq DESC LIMIT ?1)"
                          ") ORDER BY seq");
    s.bind_int(1, sqlite_detail::limit_value(finished));
    while (s.step()) out.push_back(read_task_row(s));
  }
  return out;
}

std::optional<StoredTask> SqliteStore::stored_task(const std::string& id) {
  std::lock_guard lock(mu_);
  Statement s = prepare("SELECT " MEND_TASK_COLUMNS " FROM tasks WHERE id = ?1");
  s.bind_text(1, id);
  if (!s.step()) return std::nullopt;
  return read_task_row(s);
}

std::size_t SqliteStore::prune_tasks(std::size_t keep) {
  std::lock_guard lock(mu_);
  Statement s = prepare(
      "DELETE FROM tasks WHERE seq IN (SELECT seq FROM tasks WHERE done = 1"
      " ORDER BY finished_at DESC, seq DESC LIMIT -1 OFFSET ?1)");
  s.bind_int(1, sqlite_detail::limit_value(keep));
  s.run();
  return static_cast<std::size_t>(sqlite3_changes(db_));
}

std::int64_t SqliteStore::next_task_number() {
  std::lock_guard lock(mu_);
  Statement s = prepare("SELECT value FROM counters WHERE name = 'next_task_number'");
  return s.step() ? s.int_at(0) : 1;
}

#undef MEND_TASK_COLUMNS

}  // namespace mend
