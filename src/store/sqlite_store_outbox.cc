// SqliteStore's notification outbox: enqueueing messages once per (receiver, dedup_key), the
// dispatcher's leased claims of due ones, and marking them delivered or failed (fenced).
#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>

#include "mend/store/sqlite_store.h"
#include "sqlite_store_statement.h"
#include "store_detail.h"

namespace mend {

std::string_view to_string(OutboxState state) noexcept {
  switch (state) {
    case OutboxState::pending:
      return "pending";
    case OutboxState::delivered:
      return "delivered";
    case OutboxState::dead:
      return "dead";
  }
  return "pending";
}

#define MEND_OUTBOX_COLUMNS                                                           \
  "id, receiver, dedup_key, record_id, event, payload, state, attempts, created_at, " \
  "next_attempt_at, delivered_at, last_error, lease_owner, lease_until, fence"

OutboxMessage SqliteStore::read_outbox_row(Statement& row) const {
  OutboxMessage m;
  m.id = row.int_at(0);
  m.receiver = row.text_at(1);
  m.dedup_key = row.text_at(2);
  m.record_id = row.int_at(3);  // NULL reads as 0
  m.event = row.text_at(4);
  m.payload = row.text_at(5);
  m.state = sqlite_detail::parse_or(row.text_at(6), store_detail::parse_outbox_state, m.state);
  m.attempts = sqlite_detail::clamp_to_int(row.int_at(7));
  m.created_at = row.time_at(8);
  m.next_attempt_at = row.time_at(9);
  m.delivered_at = row.optional_time_at(10);
  m.last_error = row.text_at(11);
  m.lease_owner = row.text_at(12);
  m.lease_until = row.time_at(13);
  m.fence = row.int_at(14);
  return m;
}

bool SqliteStore::enqueue(OutboxMessage& message) {
  std::lock_guard lock(mu_);
  // ON CONFLICT names the one constraint to skip on; INSERT OR IGNORE would also swallow
  // NOT NULL and CHECK failures.
  Statement s = prepare(
      "INSERT INTO outbox (receiver, dedup_key, record_id, event, payload, state, attempts,"
      " created_at, next_attempt_at, delivered_at, last_error)"
      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
      " ON CONFLICT (receiver, dedup_key) DO NOTHING");
  s.bind_text(1, message.receiver);
  s.bind_text(2, message.dedup_key);
  s.bind_id_or_null(3, message.record_id);
  s.bind_text(4, message.event);
  s.bind_text(5, message.payload);
  s.bind_text(6, to_string(message.state));
  s.bind_int(7, message.attempts);
  s.bind_time(8, message.created_at);
  s.bind_time(9, message.next_attempt_at);
  s.bind_time(10, message.delivered_at);
  s.bind_text(11, message.last_error);
  s.run();
  if (sqlite3_changes(db_) == 0) return false;
  message.id = sqlite3_last_insert_rowid(db_);
  return true;
}

bool SqliteStore::has_older_pending(const OutboxMessage& message) {
  if (message.record_id == 0) return false;
  std::lock_guard lock(mu_);
  Statement s = prepare(
      "SELECT 1 FROM outbox WHERE receiver = ?1 AND record_id = ?2 AND state = 'pending'"
      " AND id < ?3 LIMIT 1");
  s.bind_text(1, message.receiver);
  s.bind_int(2, message.record_id);
  s.bind_int(3, message.id);
  return s.step();
}

std::vector<OutboxMessage> SqliteStore::due_messages(WallTime now, std::size_t limit) {
  std::lock_guard lock(mu_);
  Statement s = prepare("SELECT " MEND_OUTBOX_COLUMNS
                        " FROM outbox WHERE state = 'pending' AND next_attempt_at <= ?1"
                        " ORDER BY next_attempt_at, id LIMIT ?2");
  s.bind_time(1, now);
  s.bind_int(2, sqlite_detail::limit_value(limit));
  std::vector<OutboxMessage> out;
  while (s.step()) out.push_back(read_outbox_row(s));
  return out;
}

std::vector<OutboxMessage> SqliteStore::claim_due(WallTime now, std::size_t limit,
                                                  const std::string& owner, Duration lease) {
  std::lock_guard lock(mu_);
  // One statement, so atomic: the same semantics as PgStore's (whose subquery skips rows other
  // claims hold locked). SQLite's RETURNING order is unspecified: sorted below.
  Statement s = prepare(
      "UPDATE outbox SET lease_owner = ?3, lease_until = ?4, fence = fence + 1"
      " WHERE id IN (SELECT id FROM outbox WHERE state = 'pending' AND next_attempt_at <= ?1"
      " AND (lease_owner = '' OR lease_owner = ?3 OR lease_until <= ?1)"
      " ORDER BY next_attempt_at, id LIMIT ?2)"
      " RETURNING " MEND_OUTBOX_COLUMNS);
  s.bind_time(1, now);
  s.bind_int(2, sqlite_detail::limit_value(limit));
  s.bind_text(3, owner);
  s.bind_time(4, now + std::chrono::duration_cast<WallTime::duration>(lease));
  std::vector<OutboxMessage> out;
  while (s.step()) out.push_back(read_outbox_row(s));
  std::sort(out.begin(), out.end(), [](const OutboxMessage& a, const OutboxMessage& b) {
    return std::tie(a.next_attempt_at, a.id) < std::tie(b.next_attempt_at, b.id);
  });
  return out;
}

std::vector<OutboxMessage> SqliteStore::outbox(std::optional<OutboxState> state,
                                               std::size_t limit) {
  std::lock_guard lock(mu_);
  Statement s = prepare("SELECT " MEND_OUTBOX_COLUMNS
                        " FROM outbox WHERE (?1 IS NULL OR state = ?1) ORDER BY id LIMIT ?2");
  if (state) s.bind_text(1, to_string(*state));
  s.bind_int(2, sqlite_detail::limit_value(limit));
  std::vector<OutboxMessage> out;
  while (s.step()) out.push_back(read_outbox_row(s));
  return out;
}

bool SqliteStore::mark_delivered(std::int64_t message_id, std::int64_t fence, WallTime at) {
  std::lock_guard lock(mu_);
  Statement s = prepare(
      "UPDATE outbox SET state = 'delivered', delivered_at = ?3, attempts = attempts + 1,"
      " lease_owner = '', lease_until = 0 WHERE id = ?1 AND fence = ?2 AND state = 'pending'");
  s.bind_int(1, message_id);
  s.bind_int(2, fence);
  s.bind_time(3, at);
  s.run();
  return sqlite3_changes(db_) > 0;
}

bool SqliteStore::mark_failed(std::int64_t message_id, std::int64_t fence, int attempts,
                              WallTime next_attempt_at, const std::string& error, bool dead) {
  std::lock_guard lock(mu_);
  Statement s = prepare(
      "UPDATE outbox SET state = ?3, attempts = ?4, next_attempt_at = ?5, last_error = ?6,"
      " lease_owner = '', lease_until = 0 WHERE id = ?1 AND fence = ?2 AND state = 'pending'");
  s.bind_int(1, message_id);
  s.bind_int(2, fence);
  s.bind_text(3, to_string(dead ? OutboxState::dead : OutboxState::pending));
  s.bind_int(4, attempts);
  s.bind_time(5, next_attempt_at);
  s.bind_text(6, error);
  s.run();
  return sqlite3_changes(db_) > 0;
}

#undef MEND_OUTBOX_COLUMNS

}  // namespace mend
