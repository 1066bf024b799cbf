// PgStore's escalation records: the records table (open_or_touch and the rest) and each record's
// timeline.
#include <algorithm>
#include <string>
#include <utility>

#include "mend/store/pg_store.h"
#include "pg_store_connection.h"
#include "store_detail.h"

namespace mend {
namespace {

using pg_detail::Params;
using pg_detail::Rows;

// The records table's columns in the order pg_record_at expects, id first. The insert and update
// bind the rest as $1 to $23, in the same order.
#define MEND_PG_RECORD_COLUMNS                                                                \
  "id, kind, fingerprint, level, tier, status, title, description, agent, task_type, "        \
  "error_type, priority, assignee, channel, occurrences, created_at, last_seen_at, sla_due, " \
  "review_at, acknowledged_at, acknowledged_by, resolved_at, resolved_by, war_room_url"

Params pg_record_params(const EscalationRecord& r) {
  Params p;
  p.text(to_string(r.kind))
      .text(r.fingerprint)
      .text(to_string(r.level))
      .integer(r.tier)
      .text(to_string(r.status))
      .text(r.title)
      .text(r.description)
      .text(r.agent)
      .text(r.task_type)
      .text(to_string(r.error_type))
      .text(r.priority)
      .text(r.assignee)
      .text(r.channel)
      .integer(r.occurrences)
      .time(r.created_at)
      .time(r.last_seen_at)
      .time(r.sla_due)
      .time(r.review_at)
      .time(r.acknowledged_at)
      .text(r.acknowledged_by)
      .time(r.resolved_at)
      .text(r.resolved_by)
      .text(r.war_room_url);
  return p;
}

EscalationRecord pg_record_at(const Rows& rows, int i) {
  using pg_detail::parse_or;
  EscalationRecord r;
  r.id = rows.int_at(i, 0);
  r.kind = parse_or(rows.text_at(i, 1), parse_record_kind, r.kind);
  r.fingerprint = rows.text_at(i, 2);
  r.level = parse_or(rows.text_at(i, 3), parse_severity, r.level);
  r.tier = pg_detail::clamp_to_int(rows.int_at(i, 4));
  r.status = parse_or(rows.text_at(i, 5), parse_record_status, r.status);
  r.title = rows.text_at(i, 6);
  r.description = rows.text_at(i, 7);
  r.agent = rows.text_at(i, 8);
  r.task_type = rows.text_at(i, 9);
  r.error_type = parse_or(rows.text_at(i, 10), parse_error_type, r.error_type);
  r.priority = rows.text_at(i, 11);
  r.assignee = rows.text_at(i, 12);
  r.channel = rows.text_at(i, 13);
  r.occurrences = rows.int_at(i, 14);
  r.created_at = rows.time_at(i, 15);
  r.last_seen_at = rows.time_at(i, 16);
  r.sla_due = rows.time_at(i, 17);
  r.review_at = rows.optional_time_at(i, 18);
  r.acknowledged_at = rows.optional_time_at(i, 19);
  r.acknowledged_by = rows.text_at(i, 20);
  r.resolved_at = rows.optional_time_at(i, 21);
  r.resolved_by = rows.text_at(i, 22);
  r.war_room_url = rows.text_at(i, 23);
  return r;
}

}  // namespace

RecordUpsert PgStore::open_or_touch(const EscalationRecord& fresh, WallTime now) {
  RecordUpsert result;
  const std::int64_t added = std::max<std::int64_t>(1, fresh.occurrences);
  transaction([&] {
    bool created = false;
    // The usual case first: one more occurrence of the active record, an atomic UPDATE (its row
    // lock orders concurrent touches, each seeing the count the previous one left).
    Rows row =
        run("UPDATE records SET occurrences = occurrences + $2::bigint,"
            " last_seen_at = GREATEST(last_seen_at, $3::bigint)"
            " WHERE fingerprint = $1::text AND status IN ('open', 'acknowledged')"
            " RETURNING " MEND_PG_RECORD_COLUMNS,
            Params().text(fresh.fingerprint).integer(added).time(now), "touching a record");
    if (row.empty()) {
      // No active record yet. Another node (or thread) may be inserting one this very moment:
      // the unique index on active fingerprints makes one of the two inserts wait for the other
      // and turn into the same touch, so there is never a second active record. (The UPDATE above
      // is not needed for that; it spares the identity sequence a value per occurrence, as ids
      // are what people quote.)
      Params p = pg_record_params(fresh);
      p.integer(added).time(now);
      row =
          run("INSERT INTO records (kind, fingerprint, level, tier, status, title, description,"
              " agent, task_type, error_type, priority, assignee, channel, occurrences,"
              " created_at, last_seen_at, sla_due, review_at, acknowledged_at, acknowledged_by,"
              " resolved_at, resolved_by, war_room_url) VALUES ($1, $2, $3, $4, $5, $6, $7, $8,"
              " $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)"
              " ON CONFLICT (fingerprint) WHERE status IN ('open', 'acknowledged')"
              " DO UPDATE SET occurrences = records.occurrences + $24::bigint,"
              " last_seen_at = GREATEST(records.last_seen_at, $25::bigint)"
              " RETURNING " MEND_PG_RECORD_COLUMNS ", (xmax = 0) AS inserted",
              p, "opening a record");
      // xmax is 0 on a freshly inserted row version, and the locking transaction's id on one
      // that ON CONFLICT updated.
      created = row.bool_at(0, 24);
    }
    EscalationRecord stored = pg_record_at(row, 0);
    if (created) {
      append_timeline({.record_id = stored.id,
                       .at = now,
                       .event = "opened",
                       .actor = "mend",
                       .detail = fresh.title});
    } else if (std::int64_t m =
                   store_detail::milestone_reached(stored.occurrences - added, stored.occurrences);
               m != 0) {
      // The first ten occurrences, then each power of ten, as SqliteStore.
      append_timeline({.record_id = stored.id,
                       .at = now,
                       .event = "occurrence",
                       .actor = "mend",
                       .detail = "occurrence " + std::to_string(m)});
    }
    result = {std::move(stored), created};
  });
  return result;
}

std::optional<EscalationRecord> PgStore::record(std::int64_t id) {
  Rows rows = run("SELECT " MEND_PG_RECORD_COLUMNS " FROM records WHERE id = $1::bigint",
                  Params().integer(id));
  if (rows.empty()) return std::nullopt;
  return pg_record_at(rows, 0);
}

std::vector<EscalationRecord> PgStore::records(const RecordFilter& filter) {
  Params p;
  if (filter.kind) {
    p.text(to_string(*filter.kind));
  } else {
    p.null();
  }
  if (filter.status) {
    p.text(to_string(*filter.status));
  } else {
    p.null();
  }
  p.boolean(filter.active_only).integer(pg_detail::limit_value(filter.limit));
  Rows rows = run("SELECT " MEND_PG_RECORD_COLUMNS
                  " FROM records WHERE ($1::text IS NULL OR kind = $1::text)"
                  " AND ($2::text IS NULL OR status = $2::text)"
                  " AND (NOT $3::boolean OR status IN ('open', 'acknowledged'))"
                  " ORDER BY id DESC LIMIT $4::bigint",
                  p);
  std::vector<EscalationRecord> out;
  out.reserve(static_cast<std::size_t>(rows.size()));
  for (int i = 0; i < rows.size(); ++i) out.push_back(pg_record_at(rows, i));
  return out;
}

bool PgStore::update_record(const EscalationRecord& record) {
  Params p = pg_record_params(record);
  p.integer(record.id);
  Rows rows =
      run("UPDATE records SET kind = $1, fingerprint = $2, level = $3, tier = $4, status = $5,"
          " title = $6, description = $7, agent = $8, task_type = $9, error_type = $10,"
          " priority = $11, assignee = $12, channel = $13, occurrences = $14, created_at = $15,"
          " last_seen_at = $16, sla_due = $17, review_at = $18, acknowledged_at = $19,"
          " acknowledged_by = $20, resolved_at = $21, resolved_by = $22, war_room_url = $23"
          " WHERE id = $24::bigint",
          p);
  return rows.affected() > 0;
}

void PgStore::append_timeline(const TimelineEntry& entry) {
  run("INSERT INTO timeline (record_id, at, event, actor, detail) VALUES ($1, $2, $3, $4, $5)",
      Params()
          .integer(entry.record_id)
          .time(entry.at)
          .text(entry.event)
          .text(entry.actor)
          .text(entry.detail));
}

std::vector<TimelineEntry> PgStore::timeline(std::int64_t record_id) {
  Rows rows =
      run("SELECT record_id, at, event, actor, detail FROM timeline WHERE record_id = $1::bigint"
          " ORDER BY at, id",
          Params().integer(record_id));
  std::vector<TimelineEntry> out;
  out.reserve(static_cast<std::size_t>(rows.size()));
  for (int i = 0; i < rows.size(); ++i) {
    out.push_back({.record_id = rows.int_at(i, 0),
                   .at = rows.time_at(i, 1),
                   .event = rows.text_at(i, 2),
                   .actor = rows.text_at(i, 3),
                   .detail = rows.text_at(i, 4)});
  }
  return out;
}

#undef MEND_PG_RECORD_COLUMNS

}  // namespace mend
