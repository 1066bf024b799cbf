// PgStore's tasks: the tasks mend serve accepted (written in batches, loaded back on a restart,
// pruned), and the next_task_number counter.
#include <optional>
#include <string>
#include <vector>

#include "mend/store/pg_store.h"
#include "pg_store_connection.h"

namespace mend {
namespace {

using pg_detail::Params;
using pg_detail::Rows;

#define MEND_PG_TASK_COLUMNS                                                               \
  "id, idempotency_key, request_digest, type, agent, request_json, done, call_in_flight, " \
  "attempts, submitted_at, deadline_at, finished_at, status, outcome_json"

StoredTask pg_task_at(const Rows& rows, int i) {
  StoredTask t;
  t.id = rows.text_at(i, 0);
  t.idempotency_key = rows.text_at(i, 1);  // NULL reads as ""
  t.request_digest = rows.text_at(i, 2);
  t.type = rows.text_at(i, 3);
  t.agent = rows.text_at(i, 4);
  t.request_json = rows.text_at(i, 5);
  t.done = rows.bool_at(i, 6);
  t.call_in_flight = rows.bool_at(i, 7);
  t.attempts = pg_detail::clamp_to_int(rows.int_at(i, 8));
  t.submitted_at = rows.time_at(i, 9);
  t.deadline_at = rows.optional_time_at(i, 10);
  t.finished_at = rows.optional_time_at(i, 11);
  t.status = rows.text_at(i, 12);
  t.outcome_json = rows.text_at(i, 13);
  return t;
}

}  // namespace

std::vector<std::size_t> PgStore::write_tasks(const std::vector<TaskWrite>& writes,
                                              std::int64_t next_task_number) {
  std::vector<std::size_t> refused;
  transaction([&] {
    for (std::size_t i = 0; i < writes.size(); ++i) {
      const StoredTask& t = writes[i].task;
      switch (writes[i].kind) {
        case TaskWrite::Kind::accept: {
          // ON CONFLICT without a target: a stored id or idempotency key (either unique index)
          // refuses the insert, and nothing else does.
          Params p;
          p.text(t.id);
          if (t.idempotency_key.empty()) {
            p.null();
          } else {
            p.text(t.idempotency_key);
          }
          p.text(t.request_digest)
              .text(t.type)
              .text(t.agent)
              .text(t.done ? std::string() : t.request_json)
              .boolean(t.done)
              .boolean(t.call_in_flight)
              .integer(t.attempts)
              .time(t.submitted_at)
              .time(t.deadline_at)
              .time(t.finished_at)
              .text(t.status)
              .text(t.outcome_json);
          Rows rows =
              run("INSERT INTO tasks (id, idempotency_key, request_digest, type, agent,"
                  " request_json, done, call_in_flight, attempts, submitted_at, deadline_at,"
                  " finished_at, status, outcome_json)"
                  " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
                  " ON CONFLICT DO NOTHING RETURNING seq",
                  p, "accepting a task");
          if (rows.empty()) refused.push_back(i);
          break;
        }
        case TaskWrite::Kind::progress:
          run("UPDATE tasks SET call_in_flight = $2::boolean, attempts = $3::bigint"
              " WHERE id = $1::text AND NOT done",
              Params().text(t.id).boolean(t.call_in_flight).integer(t.attempts),
              "recording a task's progress");
          break;
        case TaskWrite::Kind::finish:
          run("UPDATE tasks SET done = true, request_json = '', call_in_flight = false,"
              " attempts = $2::bigint, status = $3::text, outcome_json = $4::text,"
              " finished_at = $5::bigint WHERE id = $1::text",
              Params()
                  .text(t.id)
                  .integer(t.attempts)
                  .text(t.status)
                  .text(t.outcome_json)
                  .time(t.finished_at.value_or(t.submitted_at)),
              "finishing a task");
          if (writes[i].journal) append_journal(*writes[i].journal);
          break;
      }
    }
    run("INSERT INTO counters (name, value) VALUES ('next_task_number', $1::bigint)"
        " ON CONFLICT (name) DO UPDATE SET value = GREATEST(counters.value, excluded.value)",
        Params().integer(next_task_number), "raising the task counter");
  });
  return refused;
}

std::vector<StoredTask> PgStore::load_tasks(std::size_t finished) {
  // NULLS LAST: as SQLite orders a missing finished_at (lowest) in a descending sort.
  Rows rows = run("SELECT " MEND_PG_TASK_COLUMNS
                  " FROM (SELECT * FROM tasks WHERE NOT done"
                  " UNION ALL"
                  " (SELECT * FROM tasks WHERE done"
                  "  ORDER BY finished_at DESC NULLS LAST, seq DESC LIMIT $1::bigint)) AS kept"
                  " ORDER BY seq",
                  Params().integer(pg_detail::limit_value(finished)));
  std::vector<StoredTask> out;
  out.reserve(static_cast<std::size_t>(rows.size()));
  for (int i = 0; i < rows.size(); ++i) out.push_back(pg_task_at(rows, i));
  return out;
}

std::optional<StoredTask> PgStore::stored_task(const std::string& id) {
  Rows rows =
      run("SELECT " MEND_PG_TASK_COLUMNS " FROM tasks WHERE id = $1::text", Params().text(id));
  if (rows.empty()) return std::nullopt;
  return pg_task_at(rows, 0);
}

std::size_t PgStore::prune_tasks(std::size_t keep) {
  Rows rows =
      run("DELETE FROM tasks WHERE seq IN (SELECT seq FROM tasks WHERE done"
          " ORDER BY finished_at DESC NULLS LAST, seq DESC OFFSET $1::bigint)",
          Params().integer(pg_detail::limit_value(keep)));
  return static_cast<std::size_t>(rows.affected());
}

std::int64_t PgStore::next_task_number() {
  Rows rows = run("SELECT value FROM counters WHERE name = 'next_task_number'");
  return rows.empty() ? 1 : rows.int_at(0, 0);
}

#undef MEND_PG_TASK_COLUMNS

}  // namespace mend
