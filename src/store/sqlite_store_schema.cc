// SqliteStore's schema: the migrations that create and upgrade the file's tables, and
// configure(), which checks that a file is mend's (and not too new), sets the connection's
// pragmas and applies the migrations the file lacks.
#include <sqlite3.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <iterator>
#include <string>

#include "mend/store/sqlite_store.h"
#include "sqlite_store_statement.h"

namespace mend {
namespace {

// 'mend' in ASCII, in the header's application_id field: tells mend's files from other SQLite
// files, so that mend never adds its tables to a database that is not its own.
constexpr std::int64_t kApplicationId = 0x6D656E64;

struct Migration {
  int version;  // the user_version the file has once this step is applied
  const char* sql;
};

// Append-only: a released step is never edited, since files out there already ran it. A schema
// change is a new step at the end.
constexpr Migration kMigrations[] = {
    {1, R"sql(
PRAGMA application_id = 1835363940;  -- kApplicationId

-- AUTOINCREMENT: ids are what people quote ("INC-7"), so one is never reused.
CREATE TABLE records (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  level TEXT NOT NULL,
  tier INTEGER NOT NULL DEFAULT 0,
  status TEXT NOT NULL,
  title TEXT NOT NULL DEFAULT '',
  description TEXT NOT NULL DEFAULT '',
  agent TEXT NOT NULL DEFAULT '',
  task_type TEXT NOT NULL DEFAULT '',
  error_type TEXT NOT NULL,
  priority TEXT NOT NULL DEFAULT '',
  assignee TEXT NOT NULL DEFAULT '',
  channel TEXT NOT NULL DEFAULT '',
  occurrences INTEGER NOT NULL DEFAULT 1,
  created_at INTEGER NOT NULL,       -- milliseconds since the Unix epoch, as every time here
  last_seen_at INTEGER NOT NULL,
  sla_due INTEGER NOT NULL,
  review_at INTEGER,                 -- NULL: none
  acknowledged_at INTEGER,
  acknowledged_by TEXT NOT NULL DEFAULT '',
  resolved_at INTEGER,
  resolved_by TEXT NOT NULL DEFAULT '',
  war_room_url TEXT NOT NULL DEFAULT ''
);
-- open_or_touch's lookup. Its WHERE must stay textually the queries' for SQLite to use it.
CREATE INDEX records_active_by_fingerprint ON records(fingerprint)
  WHERE status IN ('open', 'acknowledged');
CREATE INDEX records_by_status ON records(status);

CREATE TABLE timeline (
  id INTEGER PRIMARY KEY,
  record_id INTEGER NOT NULL REFERENCES records(id),
  at INTEGER NOT NULL,
  event TEXT NOT NULL,
  actor TEXT NOT NULL DEFAULT '',
  detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX timeline_by_record ON timeline(record_id, at);

CREATE TABLE outbox (
  id INTEGER PRIMARY KEY,
  receiver TEXT NOT NULL,
  dedup_key TEXT NOT NULL,
  record_id INTEGER REFERENCES records(id),  -- NULL: about no record
  event TEXT NOT NULL DEFAULT '',
  payload TEXT NOT NULL DEFAULT '',
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  next_attempt_at INTEGER NOT NULL,
  delivered_at INTEGER,
  last_error TEXT NOT NULL DEFAULT '',
  UNIQUE (receiver, dedup_key)
);
-- The dispatcher's poll: pending messages by due time (the rowid breaks ties).
CREATE INDEX outbox_due ON outbox(state, next_attempt_at);

CREATE TABLE journal (
  id INTEGER PRIMARY KEY,
  task_id TEXT NOT NULL,
  task_type TEXT NOT NULL DEFAULT '',
  primary_agent TEXT NOT NULL DEFAULT '',
  status TEXT NOT NULL DEFAULT '',
  answered_by TEXT NOT NULL DEFAULT '',
  attempts INTEGER NOT NULL DEFAULT 0,
  record_id INTEGER REFERENCES records(id),  -- NULL: no escalation
  started_at INTEGER NOT NULL,
  finished_at INTEGER NOT NULL,
  outcome_json TEXT NOT NULL DEFAULT ''
);
CREATE INDEX journal_by_task ON journal(task_id);
)sql"},
    {2, R"sql(
-- The tasks mend serve accepted: written before the client hears "accepted", so that a restart
-- resumes or ends each one instead of forgetting it. seq orders them as accepted.
CREATE TABLE tasks (
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  idempotency_key TEXT,              -- NULL: none
  request_digest TEXT NOT NULL DEFAULT '',
  type TEXT NOT NULL DEFAULT '',
  agent TEXT NOT NULL DEFAULT '',
  request_json TEXT NOT NULL DEFAULT '',  -- while running; '' once done
  done INTEGER NOT NULL DEFAULT 0,
  call_in_flight INTEGER NOT NULL DEFAULT 1,
  attempts INTEGER NOT NULL DEFAULT 0,
  submitted_at INTEGER NOT NULL,
  deadline_at INTEGER,
  finished_at INTEGER,
  status TEXT NOT NULL DEFAULT '',
  outcome_json TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX tasks_by_key ON tasks(idempotency_key) WHERE idempotency_key IS NOT NULL;
-- load_tasks and prune_tasks: the running ones, and the finished ones newest first.
CREATE INDEX tasks_by_finish ON tasks(done, finished_at, seq);

-- Small named counters: next_task_number (no generated task id below it was ever handed out).
CREATE TABLE counters (
  name TEXT PRIMARY KEY,
  value INTEGER NOT NULL
);
)sql"},
    {3, R"sql(
-- Delivery leases (claim_due): the owner holding a pending message until lease_until ('' and 0:
-- nobody), and the fencing number every claim raises and every completion must match.
ALTER TABLE outbox ADD COLUMN lease_owner TEXT NOT NULL DEFAULT '';
ALTER TABLE outbox ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN fence INTEGER NOT NULL DEFAULT 0;
)sql"},
};

constexpr int kLatestSchemaVersion = kMigrations[std::size(kMigrations) - 1].version;

}  // namespace

int SqliteStore::latest_schema_version() noexcept {
  return kLatestSchemaVersion;
}

void SqliteStore::configure(const SqliteOptions& options) {
  std::lock_guard lock(mu_);
  sqlite3_extended_result_codes(db_, 1);
  const auto busy_ms =
      std::clamp<std::chrono::milliseconds::rep>(options.busy_timeout.count(), 0, INT_MAX);
  sqlite3_busy_timeout(db_, static_cast<int>(busy_ms));

  // Read-only checks first, so that a file mend refuses is left exactly as it was. The first
  // read is also where SQLite finds out that a file is not a database at all.
  auto read_int = [this](std::string_view sql) {
    Statement s = prepare(sql);
    return s.step("reading the database header") ? s.int_at(0) : 0;
  };
  const std::int64_t application_id = read_int("PRAGMA application_id");
  const std::int64_t version = read_int("PRAGMA user_version");
  const std::int64_t objects = read_int("SELECT count(*) FROM sqlite_schema");
  const bool blank = application_id == 0 && version == 0 && objects == 0;
  if (!blank && application_id != kApplicationId) {
    throw Exception(sqlite_detail::database_error(
        path_, "refusing to open", "a SQLite database of another application, not a mend store"));
  }
  if (version > kLatestSchemaVersion) {
    throw Exception(sqlite_detail::database_error(path_, "refusing to open",
                                                  "its schema version " + std::to_string(version) +
                                                      " is newer than this build of mend knows (" +
                                                      std::to_string(kLatestSchemaVersion) +
                                                      "): it was written by a newer mend"));
  }

  {
    Statement wal = prepare("PRAGMA journal_mode=WAL");
    const std::string mode = wal.step() ? wal.text_at(0) : std::string();
    // An in-memory database reports "memory"; a file that cannot do WAL (some network file
    // systems) would silently lose the durability SqliteOptions describes, so it is an error.
    if (mode != "wal" && mode != "memory") {
      throw Exception(sqlite_detail::database_error(path_, "enabling WAL mode",
                                                    "journal mode stays '" + mode + "'"));
    }
  }
  // See SqliteOptions::synchronous_full for why NORMAL is the default.
  execute(options.synchronous_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
  execute("PRAGMA foreign_keys=ON");  // per connection, and off by default in SQLite
  schema_version_ = static_cast<int>(version);
  migrate();
}

void SqliteStore::migrate() {
  for (const Migration& step : kMigrations) {
    if (step.version <= schema_version_) continue;
    transaction([&] {
      // Another connection may have applied it between our read and our write lock.
      Statement current = prepare("PRAGMA user_version");
      if (current.step() && current.int_at(0) >= step.version) return;
      if (sqlite3_exec(db_, step.sql, nullptr, nullptr, nullptr) != SQLITE_OK) {
        fail("applying schema migration " + std::to_string(step.version));
      }
      const std::string set_version = "PRAGMA user_version = " + std::to_string(step.version);
      if (sqlite3_exec(db_, set_version.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
        fail(set_version);
      }
    });
    schema_version_ = step.version;
  }
}

}  // namespace mend
