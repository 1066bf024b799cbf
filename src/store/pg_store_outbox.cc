// PgStore's notification outbox (enqueued once per (receiver, dedup_key), claimed under a lease
// when due, marked delivered or failed when the claim's fence still holds) and its journal of
// finished tasks.
#include <algorithm>
#include <chrono>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "mend/store/pg_store.h"
#include "pg_store_connection.h"
#include "store_detail.h"

namespace mend {
namespace {

using pg_detail::Params;
using pg_detail::Rows;

#define MEND_PG_OUTBOX_COLUMNS                                                        \
  "id, receiver, dedup_key, record_id, event, payload, state, attempts, created_at, " \
  "next_attempt_at, delivered_at, last_error, lease_owner, lease_until, fence"

OutboxMessage pg_outbox_at(const Rows& rows, int i) {
  OutboxMessage m;
  m.id = rows.int_at(i, 0);
  m.receiver = rows.text_at(i, 1);
  m.dedup_key = rows.text_at(i, 2);
  m.record_id = rows.int_at(i, 3);  // NULL reads as 0
  m.event = rows.text_at(i, 4);
  m.payload = rows.text_at(i, 5);
  m.state = pg_detail::parse_or(rows.text_at(i, 6), store_detail::parse_outbox_state, m.state);
  m.attempts = pg_detail::clamp_to_int(rows.int_at(i, 7));
  m.created_at = rows.time_at(i, 8);
  m.next_attempt_at = rows.time_at(i, 9);
  m.delivered_at = rows.optional_time_at(i, 10);
  m.last_error = rows.text_at(i, 11);
  m.lease_owner = rows.text_at(i, 12);
  m.lease_until = rows.time_at(i, 13);
  m.fence = rows.int_at(i, 14);
  return m;
}

std::vector<OutboxMessage> pg_outbox_rows(const Rows& rows) {
  std::vector<OutboxMessage> out;
  out.reserve(static_cast<std::size_t>(rows.size()));
  for (int i = 0; i < rows.size(); ++i) out.push_back(pg_outbox_at(rows, i));
  return out;
}

}  // namespace

bool PgStore::enqueue(OutboxMessage& message) {
  // ON CONFLICT names the one constraint to skip on: a concurrent enqueue of the same key (another
  // node replaying the escalation) waits for the first and then writes nothing.
  Rows rows =
      run("INSERT INTO outbox (receiver, dedup_key, record_id, event, payload, state, attempts,"
          " created_at, next_attempt_at, delivered_at, last_error)"
          " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
          " ON CONFLICT (receiver, dedup_key) DO NOTHING RETURNING id",
          Params()
              .text(message.receiver)
              .text(message.dedup_key)
              .id_or_null(message.record_id)
              .text(message.event)
              .text(message.payload)
              .text(to_string(message.state))
              .integer(message.attempts)
              .time(message.created_at)
              .time(message.next_attempt_at)
              .time(message.delivered_at)
              .text(message.last_error),
          "enqueueing a notification");
  if (rows.empty()) return false;
  message.id = rows.int_at(0, 0);
  return true;
}

bool PgStore::has_older_pending(const OutboxMessage& message) {
  if (message.record_id == 0) return false;
  Rows rows =
      run("SELECT 1 FROM outbox WHERE receiver = $1::text AND record_id = $2::bigint"
          " AND state = 'pending' AND id < $3::bigint LIMIT 1",
          Params().text(message.receiver).integer(message.record_id).integer(message.id));
  return !rows.empty();
}

std::vector<OutboxMessage> PgStore::due_messages(WallTime now, std::size_t limit) {
  return pg_outbox_rows(run("SELECT " MEND_PG_OUTBOX_COLUMNS
                            " FROM outbox WHERE state = 'pending' AND next_attempt_at <= $1::bigint"
                            " ORDER BY next_attempt_at, id LIMIT $2::bigint",
                            Params().time(now).integer(pg_detail::limit_value(limit))));
}

std::vector<OutboxMessage> PgStore::claim_due(WallTime now, std::size_t limit,
                                              const std::string& owner, Duration lease) {
  // One statement: the subquery locks the rows it picks and skips those another node's claim
  // holds locked right now (SKIP LOCKED); the lease columns then keep them out of later claims
  // until lease_until. Under READ COMMITTED a row whose lease changed while this statement waited
  // is re-checked against the WHERE clause before it is updated. RETURNING's order is
  // unspecified: sorted below.
  std::vector<OutboxMessage> out = pg_outbox_rows(
      run("UPDATE outbox SET lease_owner = $3::text, lease_until = $4::bigint, fence = fence + 1"
          " WHERE id IN (SELECT id FROM outbox WHERE state = 'pending' AND next_attempt_at <= "
          "$1::bigint"
          " AND (lease_owner = '' OR lease_owner = $3::text OR lease_until <= $1::bigint)"
          " ORDER BY next_attempt_at, id LIMIT $2::bigint FOR UPDATE SKIP LOCKED)"
          " RETURNING " MEND_PG_OUTBOX_COLUMNS,
          Params()
              .time(now)
              .integer(pg_detail::limit_value(limit))
              .text(owner)
              .time(now + std::chrono::duration_cast<WallTime::duration>(lease)),
          "claiming due notifications"));
  std::sort(out.begin(), out.end(), [](const OutboxMessage& a, const OutboxMessage& b) {
    return std::tie(a.next_attempt_at, a.id) < std::tie(b.next_attempt_at, b.id);
  });
  return out;
}

std::vector<OutboxMessage> PgStore::outbox(std::optional<OutboxState> state, std::size_t limit) {
  Params p;
  if (state) {
    p.text(to_string(*state));
  } else {
    p.null();
  }
  p.integer(pg_detail::limit_value(limit));
  return pg_outbox_rows(run("SELECT " MEND_PG_OUTBOX_COLUMNS
                            " FROM outbox WHERE ($1::text IS NULL OR state = $1::text)"
                            " ORDER BY id LIMIT $2::bigint",
                            p));
}

bool PgStore::mark_delivered(std::int64_t message_id, std::int64_t fence, WallTime at) {
  return !run("UPDATE outbox SET state = 'delivered', delivered_at = $3::bigint,"
              " attempts = attempts + 1, lease_owner = '', lease_until = 0"
              " WHERE id = $1::bigint AND fence = $2::bigint AND state = 'pending' RETURNING id",
              Params().integer(message_id).integer(fence).time(at))
              .empty();
}

bool PgStore::mark_failed(std::int64_t message_id, std::int64_t fence, int attempts,
                          WallTime next_attempt_at, const std::string& error, bool dead) {
  return !run("UPDATE outbox SET state = $3::text, attempts = $4::bigint,"
              " next_attempt_at = $5::bigint, last_error = $6::text, lease_owner = '',"
              " lease_until = 0"
              " WHERE id = $1::bigint AND fence = $2::bigint AND state = 'pending' RETURNING id",
              Params()
                  .integer(message_id)
                  .integer(fence)
                  .text(to_string(dead ? OutboxState::dead : OutboxState::pending))
                  .integer(attempts)
                  .time(next_attempt_at)
                  .text(error))
              .empty();
}

// --- Journal -----------------------------------------------------------------------------------

std::int64_t PgStore::append_journal(const JournalEntry& entry) {
  Rows rows =
      run("INSERT INTO journal (task_id, task_type, primary_agent, status, answered_by, attempts,"
          " record_id, started_at, finished_at, outcome_json)"
          " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
          Params()
              .text(entry.task_id)
              .text(entry.task_type)
              .text(entry.primary_agent)
              .text(entry.status)
              .text(entry.answered_by)
              .integer(entry.attempts)
              .id_or_null(entry.record_id)
              .time(entry.started_at)
              .time(entry.finished_at)
              .text(entry.outcome_json),
          "appending to the journal");
  return rows.int_at(0, 0);
}

std::vector<JournalEntry> PgStore::journal(std::size_t limit) {
  Rows rows =
      run("SELECT id, task_id, task_type, primary_agent, status, answered_by, attempts, record_id,"
          " started_at, finished_at, outcome_json FROM journal ORDER BY id DESC LIMIT $1::bigint",
          Params().integer(pg_detail::limit_value(limit)));
  std::vector<JournalEntry> out;
  out.reserve(static_cast<std::size_t>(rows.size()));
  for (int i = 0; i < rows.size(); ++i) {
    JournalEntry e;
    e.id = rows.int_at(i, 0);
    e.task_id = rows.text_at(i, 1);
    e.task_type = rows.text_at(i, 2);
    e.primary_agent = rows.text_at(i, 3);
    e.status = rows.text_at(i, 4);
    e.answered_by = rows.text_at(i, 5);
    e.attempts = pg_detail::clamp_to_int(rows.int_at(i, 6));
    e.record_id = rows.int_at(i, 7);
    e.started_at = rows.time_at(i, 8);
    e.finished_at = rows.time_at(i, 9);
    e.outcome_json = rows.text_at(i, 10);
    out.push_back(std::move(e));
  }
  return out;
}

#undef MEND_PG_OUTBOX_COLUMNS

}  // namespace mend
