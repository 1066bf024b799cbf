// SqliteStore's escalation records: the records table (open_or_touch and the rest) and each
// record's timeline.
#include <sqlite3.h>

#include <algorithm>
#include <string>
#include <utility>

#include "mend/store/sqlite_store.h"
#include "sqlite_store_statement.h"
#include "store_detail.h"

namespace mend {
namespace {

// The records table's columns in the order read_record_row expects, id first. The insert and
// update bind the rest as parameters ?1 to ?23, in the same order.
#define MEND_RECORD_COLUMNS                                                                   \
  "id, kind, fingerprint, level, tier, status, title, description, agent, task_type, "        \
  "error_type, priority, assignee, channel, occurrences, created_at, last_seen_at, sla_due, " \
  "review_at, acknowledged_at, acknowledged_by, resolved_at, resolved_by, war_room_url"

template <class Statement>
void bind_record_fields(Statement& s, const EscalationRecord& r) {
  s.bind_text(1, to_string(r.kind));
  s.bind_text(2, r.fingerprint);
  s.bind_text(3, to_string(r.level));
  s.bind_int(4, r.tier);
  s.bind_text(5, to_string(r.status));
  s.bind_text(6, r.title);
  s.bind_text(7, r.description);
  s.bind_text(8, r.agent);
  s.bind_text(9, r.task_type);
  s.bind_text(10, to_string(r.error_type));
  s.bind_text(11, r.priority);
  s.bind_text(12, r.assignee);
  s.bind_text(13, r.channel);
  s.bind_int(14, r.occurrences);
  s.bind_time(15, r.created_at);
  s.bind_time(16, r.last_seen_at);
  s.bind_time(17, r.sla_due);
  s.bind_time(18, r.review_at);
  s.bind_time(19, r.acknowledged_at);
  s.bind_text(20, r.acknowledged_by);
  s.bind_time(21, r.resolved_at);
  s.bind_text(22, r.resolved_by);
  s.bind_text(23, r.war_room_url);
}

}  // namespace

EscalationRecord SqliteStore::read_record_row(Statement& row) const {
  EscalationRecord r;
  r.id = row.int_at(0);
  r.kind = sqlite_detail::parse_or(row.text_at(1), parse_record_kind, r.kind);
  r.fingerprint = row.text_at(2);
  r.level = sqlite_detail::parse_or(row.text_at(3), parse_severity, r.level);
  r.tier = sqlite_detail::clamp_to_int(row.int_at(4));
  r.status = sqlite_detail::parse_or(row.text_at(5), parse_record_status, r.status);
  r.title = row.text_at(6);
  r.description = row.text_at(7);
  r.agent = row.text_at(8);
  r.task_type = row.text_at(9);
  r.error_type = sqlite_detail::parse_or(row.text_at(10), parse_error_type, r.error_type);
  r.priority = row.text_at(11);
  r.assignee = row.text_at(12);
  r.channel = row.text_at(13);
  r.occurrences = row.int_at(14);
  r.created_at = row.time_at(15);
  r.last_seen_at = row.time_at(16);
  r.sla_due = row.time_at(17);
  r.review_at = row.optional_time_at(18);
  r.acknowledged_at = row.optional_time_at(19);
  r.acknowledged_by = row.text_at(20);
  r.resolved_at = row.optional_time_at(21);
  r.resolved_by = row.text_at(22);
  r.war_room_url = row.text_at(23);
  return r;
}

RecordUpsert SqliteStore::open_or_touch(const EscalationRecord& fresh, WallTime now) {
  RecordUpsert result;
  transaction([&] {
    std::optional<EscalationRecord> active;
    {
      Statement find = prepare("SELECT " MEND_RECORD_COLUMNS
                               " FROM records WHERE fingerprint = ?1"
                               " AND status IN ('open', 'acknowledged') ORDER BY id LIMIT 1");
      find.bind_text(1, fresh.fingerprint);
      if (find.step()) active = read_record_row(find);
    }
    if (active) {
      const std::int64_t added = std::max<std::int64_t>(1, fresh.occurrences);
      Statement touch = prepare(
          "UPDATE records SET occurrences = occurrences + ?3,"
          " last_seen_at = MAX(last_seen_at, ?2) WHERE id = ?1");
      touch.bind_int(1, active->id);
      touch.bind_time(2, now);
      touch.bind_int(3, added);
      touch.run();
      const std::int64_t before = active->occurrences;
      active->occurrences += added;
      active->last_seen_at = std::max(active->last_seen_at, sqlite_detail::truncated(now));
      // The first ten occurrences, then each power of ten: an outage of ten thousand failures
      // leaves a readable timeline of 13 lines, while the count stays exact.
      if (std::int64_t m = store_detail::milestone_reached(before, active->occurrences); m != 0) {
        append_timeline({.record_id = active->id,
                         .at = now,
                         .event = "occurrence",
                         .actor = "mend",
                         .detail = "occurrence " + std::to_string(m)});
      }
      result = {std::move(*active), false};
      return;
    }
    std::int64_t id = 0;
    {
      Statement insert = prepare(
          "INSERT INTO records (kind, fingerprint, level, tier, status, title, description, agent,"
          " task_type, error_type, priority, assignee, channel, occurrences, created_at,"
          " last_seen_at, sla_due, review_at, acknowledged_at, acknowledged_by, resolved_at,"
          " resolved_by, war_room_url) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12,"
          " ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23)");
      bind_record_fields(insert, fresh);
      insert.run();
      id = sqlite3_last_insert_rowid(db_);
    }
    append_timeline(
        {.record_id = id, .at = now, .event = "opened", .actor = "mend", .detail = fresh.title});
    // Read back rather than copy `fresh`, so the caller sees exactly what is stored (times to
    // the millisecond).
    result = {record(id).value_or(fresh), true};
  });
  return result;
}

std::optional<EscalationRecord> SqliteStore::record(std::int64_t id) {
  std::lock_guard lock(mu_);
  Statement s = prepare("SELECT " MEND_RECORD_COLUMNS " FROM records WHERE id = ?1");
  s.bind_int(1, id);
  if (!s.step()) return std::nullopt;
  return read_record_row(s);
}

std::vector<EscalationRecord> SqliteStore::records(const RecordFilter& filter) {
  std::lock_guard lock(mu_);
  Statement s = prepare("SELECT " MEND_RECORD_COLUMNS
                        " FROM records WHERE (?1 IS NULL OR kind = ?1)"
                        " AND (?2 IS NULL OR status = ?2)"
                        " AND (?3 = 0 OR status IN ('open', 'acknowledged'))"
                        " ORDER BY id DESC LIMIT ?4");
  if (filter.kind) s.bind_text(1, to_string(*filter.kind));
  if (filter.status) s.bind_text(2, to_string(*filter.status));
  s.bind_int(3, filter.active_only ? 1 : 0);
  s.bind_int(4, sqlite_detail::limit_value(filter.limit));
  std::vector<EscalationRecord> out;
  while (s.step()) out.push_back(read_record_row(s));
  return out;
}

bool SqliteStore::update_record(const EscalationRecord& record) {
  std::lock_guard lock(mu_);
  Statement s = prepare(
      "UPDATE records SET kind = ?1, fingerprint = ?2, level = ?3, tier = ?4, status = ?5,"
      " title = ?6, description = ?7, agent = ?8, task_type = ?9, error_type = ?10,"
      " priority = ?11, assignee = ?12, channel = ?13, occurrences = ?14, created_at = ?15,"
      " last_seen_at = ?16, sla_due = ?17, review_at = ?18, acknowledged_at = ?19,"
      " acknowledged_by = ?20, resolved_at = ?21, resolved_by = ?22, war_room_url = ?23"
      " WHERE id = ?24");
  bind_record_fields(s, record);
  s.bind_int(24, record.id);
  s.run();
  return sqlite3_changes(db_) > 0;
}

void SqliteStore::append_timeline(const TimelineEntry& entry) {
  std::lock_guard lock(mu_);
  Statement s = prepare(
      "INSERT INTO timeline (record_id, at, event, actor, detail) VALUES (?1, ?2, ?3, ?4, ?5)");
  s.bind_int(1, entry.record_id);
  s.bind_time(2, entry.at);
  s.bind_text(3, entry.event);
  s.bind_text(4, entry.actor);
  s.bind_text(5, entry.detail);
  s.run();
}

std::vector<TimelineEntry> SqliteStore::timeline(std::int64_t record_id) {
  std::lock_guard lock(mu_);
  Statement s = prepare(
      "SELECT record_id, at, event, actor, detail FROM timeline WHERE record_id = ?1"
      " ORDER BY at, id");
  s.bind_int(1, record_id);
  std::vector<TimelineEntry> out;
  while (s.step()) {
    out.push_back({.record_id = s.int_at(0),
                   .at = s.time_at(1),
                   .event = s.text_at(2),
                   .actor = s.text_at(3),
                   .detail = s.text_at(4)});
  }
  return out;
}

#undef MEND_RECORD_COLUMNS

}  // namespace mend
