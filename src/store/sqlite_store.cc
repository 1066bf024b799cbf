#include "mend/sqlite_store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <limits>
#include <utility>

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

namespace {

std::optional<OutboxState> parse_outbox_state(std::string_view name) noexcept {
  for (OutboxState s : {OutboxState::pending, OutboxState::delivered, OutboxState::dead}) {
    if (to_string(s) == name) return s;
  }
  return std::nullopt;
}

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
};

constexpr int kLatestSchemaVersion = kMigrations[std::size(kMigrations) - 1].version;

// Times are whole milliseconds in the file: enough for SLAs and retries, and readable with
// SQLite's own date functions (datetime(created_at / 1000, 'unixepoch')).
std::int64_t to_millis(WallTime t) {
  return std::chrono::floor<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

WallTime from_millis(std::int64_t ms) {
  // A stored value beyond what WallTime holds (about +-292 years) saturates instead of
  // overflowing.
  constexpr std::int64_t kLimit =
      std::chrono::duration_cast<std::chrono::milliseconds>(WallTime::duration::max()).count();
  ms = std::clamp(ms, -kLimit, kLimit);
  return WallTime(std::chrono::duration_cast<WallTime::duration>(std::chrono::milliseconds(ms)));
}

WallTime truncated(WallTime t) {
  return from_millis(to_millis(t));
}

int clamp_to_int(std::int64_t v) {
  return static_cast<int>(std::clamp<std::int64_t>(v, std::numeric_limits<int>::min(),
                                                   std::numeric_limits<int>::max()));
}

std::int64_t limit_value(std::size_t limit) {
  return static_cast<std::int64_t>(std::min<std::size_t>(
      limit, static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max())));
}

template <class E, class Parse>
E parse_or(const std::string& name, Parse parse, E fallback) {
  std::optional<E> parsed = parse(name);
  return parsed ? *parsed : fallback;
}

Error database_error(const std::string& path, std::string_view doing, std::string_view why) {
  std::string message = "mend store '";
  message.append(path).append("': ").append(doing).append(": ").append(why);
  Error e = Error::classified_as(ErrorType::database_error, Severity::high, std::move(message));
  e.kind = "database";
  return e;
}

}  // namespace

// Statements are prepared once per connection and cached: open_or_touch runs three of them for
// every escalation, and compiling SQL (parsing, planning) costs more than running these small
// indexed statements. A Statement borrows a cached one and resets it (and its bindings) when it
// goes out of scope, so that it holds no read snapshot open and is ready for the next caller.
// The same SQL must not be used by two Statements at once (no method nests them).
class SqliteStore::Statement {
 public:
  Statement(const SqliteStore& store, sqlite3_stmt* stmt) : store_(store), stmt_(stmt) {}
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }

  void bind_int(int index, std::int64_t value) {
    check_bind(sqlite3_bind_int64(stmt_, index, value));
  }
  void bind_text(int index, std::string_view value) {
    if (value.size() > static_cast<std::size_t>(INT_MAX)) {
      throw Exception(database_error(store_.path_, "binding a value", "string too large"));
    }
    check_bind(sqlite3_bind_text(stmt_, index, value.data(), static_cast<int>(value.size()),
                                 SQLITE_TRANSIENT));
  }
  void bind_time(int index, WallTime value) { bind_int(index, to_millis(value)); }
  void bind_time(int index, const std::optional<WallTime>& value) {
    if (value) {
      bind_time(index, *value);
    } else {
      check_bind(sqlite3_bind_null(stmt_, index));
    }
  }
  void bind_null(int index) { check_bind(sqlite3_bind_null(stmt_, index)); }
  // Ids where 0 means "none" are NULL in the file, so that foreign keys hold.
  void bind_id_or_null(int index, std::int64_t id) {
    if (id != 0) {
      bind_int(index, id);
    } else {
      check_bind(sqlite3_bind_null(stmt_, index));
    }
  }

  // True with a row to read, false when done. An error names `doing`, or else the SQL.
  bool step(std::string_view doing = {}) {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    store_.fail(doing.empty() ? sql() : doing);
  }
  // For statements that return no rows.
  void run() {
    while (step()) {
    }
  }

  std::int64_t int_at(int column) const { return sqlite3_column_int64(stmt_, column); }
  std::string text_at(int column) const {
    const unsigned char* text = sqlite3_column_text(stmt_, column);
    if (text == nullptr) return {};
    const int bytes = sqlite3_column_bytes(stmt_, column);
    return std::string(reinterpret_cast<const char*>(text), static_cast<std::size_t>(bytes));
  }
  WallTime time_at(int column) const { return from_millis(int_at(column)); }
  std::optional<WallTime> optional_time_at(int column) const {
    if (sqlite3_column_type(stmt_, column) == SQLITE_NULL) return std::nullopt;
    return time_at(column);
  }

 private:
  std::string_view sql() const { return sqlite3_sql(stmt_); }
  void check_bind(int rc) {
    if (rc != SQLITE_OK) store_.fail("binding a parameter");
  }

  const SqliteStore& store_;
  sqlite3_stmt* const stmt_;
};

namespace {

// The records table's columns in the order read_record_row expects, id first. The insert and
// update bind the rest as parameters ?1 to ?23, in the same order.
#define MEND_RECORD_COLUMNS                                                                   \
  "id, kind, fingerprint, level, tier, status, title, description, agent, task_type, "        \
  "error_type, priority, assignee, channel, occurrences, created_at, last_seen_at, sla_due, " \
  "review_at, acknowledged_at, acknowledged_by, resolved_at, resolved_by, war_room_url"
#define MEND_OUTBOX_COLUMNS                                                           \
  "id, receiver, dedup_key, record_id, event, payload, state, attempts, created_at, " \
  "next_attempt_at, delivered_at, last_error"
#define MEND_JOURNAL_COLUMNS                                                                      \
  "id, task_id, task_type, primary_agent, status, answered_by, attempts, record_id, started_at, " \
  "finished_at, outcome_json"

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

SqliteStore::SqliteStore(std::string path, sqlite3* db) : path_(std::move(path)), db_(db) {}

SqliteStore::~SqliteStore() {
  for (auto& [sql, stmt] : statements_) sqlite3_finalize(stmt);
  // The last connection to close checkpoints the WAL into the database file and removes it.
  sqlite3_close_v2(db_);
}

int SqliteStore::latest_schema_version() noexcept {
  return kLatestSchemaVersion;
}

Result<std::unique_ptr<SqliteStore>> SqliteStore::open(const std::string& path,
                                                       SqliteOptions options) {
  // A new file is created readable by its owner only, before SQLite opens it: what mend keeps
  // (tasks' payloads, incidents, notifications) is nobody else's to read, and SQLite gives the
  // WAL and shared-memory files the database file's permissions. An existing file keeps its own.
  if (path != ":memory:" && !path.empty()) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) ::close(fd);
  }
  sqlite3* db = nullptr;
  // NOMUTEX: the store's own mutex serialises every use of the connection already.
  const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
  const int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
  if (rc != SQLITE_OK) {
    std::string why = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    if (const int os_error = db != nullptr ? sqlite3_system_errno(db) : 0; os_error != 0) {
      why.append(" (").append(std::strerror(os_error)).append(")");
    }
    sqlite3_close_v2(db);
    return database_error(path, "cannot open", why);
  }
  std::unique_ptr<SqliteStore> store(new SqliteStore(path, db));
  try {
    store->configure(options);
  } catch (const Exception& e) {
    return e.error();
  }
  return store;
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
    throw Exception(database_error(path_, "refusing to open",
                                   "a SQLite database of another application, not a mend store"));
  }
  if (version > kLatestSchemaVersion) {
    throw Exception(database_error(path_, "refusing to open",
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
      throw Exception(
          database_error(path_, "enabling WAL mode", "journal mode stays '" + mode + "'"));
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

SqliteStore::Statement SqliteStore::prepare(std::string_view sql) {
  auto it = statements_.find(sql);
  if (it == statements_.end()) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT,
                           &stmt, nullptr) != SQLITE_OK) {
      sqlite3_finalize(stmt);
      fail("preparing " + std::string(sql));
    }
    it = statements_.emplace(sql, stmt).first;
  }
  return Statement(*this, it->second);
}

void SqliteStore::execute(std::string_view sql) {
  prepare(sql).run();
}

void SqliteStore::fail(std::string_view doing) const {
  std::string why = sqlite3_errmsg(db_);
  why.append(" (sqlite error ").append(std::to_string(sqlite3_extended_errcode(db_))).append(")");
  throw Exception(database_error(path_, doing, why));
}

// --- Transactions ------------------------------------------------------------------------------

void SqliteStore::transaction(const std::function<void()>& body) {
  std::lock_guard lock(mu_);
  const bool outermost = depth_ == 0;
  // IMMEDIATE takes the write lock at once: a read-then-write body (open_or_touch) can then never
  // fail half-way with SQLITE_BUSY because another connection wrote in between, and it waits for
  // that connection (busy_timeout) instead.
  execute(outermost ? "BEGIN IMMEDIATE" : "SAVEPOINT mend_nested");
  ++depth_;
  try {
    body();
  } catch (...) {
    --depth_;
    roll_back(outermost);
    throw;
  }
  --depth_;
  if (!outermost) {
    execute("RELEASE mend_nested");
    return;
  }
  try {
    execute("COMMIT");
  } catch (...) {
    // A failed COMMIT (disk full, I/O error) may leave the transaction open: end it, so that the
    // connection is usable again.
    if (sqlite3_get_autocommit(db_) == 0) roll_back(true);
    throw;
  }
}

void SqliteStore::roll_back(bool outermost) noexcept {
  // Errors are ignored: the caller is already propagating the error that matters, and SQLite
  // rolls back by itself after the failures that leave no transaction to roll back.
  try {
    if (outermost) {
      execute("ROLLBACK");
    } else {
      execute("ROLLBACK TO mend_nested");
      execute("RELEASE mend_nested");
    }
  } catch (...) {
  }
}

// --- Records -----------------------------------------------------------------------------------

EscalationRecord SqliteStore::read_record_row(Statement& row) const {
  EscalationRecord r;
  r.id = row.int_at(0);
  r.kind = parse_or(row.text_at(1), parse_record_kind, r.kind);
  r.fingerprint = row.text_at(2);
  r.level = parse_or(row.text_at(3), parse_severity, r.level);
  r.tier = clamp_to_int(row.int_at(4));
  r.status = parse_or(row.text_at(5), parse_record_status, r.status);
  r.title = row.text_at(6);
  r.description = row.text_at(7);
  r.agent = row.text_at(8);
  r.task_type = row.text_at(9);
  r.error_type = parse_or(row.text_at(10), parse_error_type, r.error_type);
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

namespace {
// The highest milestone in (before, after], or 0: a count that jumps (escalations that waited for
// the store together) still leaves the line of the milestone it passed. Every count up to ten is
// one; above ten only the powers of ten are.
std::int64_t milestone_reached(std::int64_t before, std::int64_t after) {
  if (after <= before) return 0;
  if (after <= 10) return after;
  std::int64_t power = 10;
  while (power <= after / 10) power *= 10;
  return power > before ? power : 0;
}
}  // namespace

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
      active->last_seen_at = std::max(active->last_seen_at, truncated(now));
      // The first ten occurrences, then each power of ten: an outage of ten thousand failures
      // leaves a readable timeline of 13 lines, while the count stays exact.
      if (std::int64_t m = milestone_reached(before, active->occurrences); m != 0) {
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
  s.bind_int(4, limit_value(filter.limit));
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

// --- Outbox ------------------------------------------------------------------------------------

OutboxMessage SqliteStore::read_outbox_row(Statement& row) const {
  OutboxMessage m;
  m.id = row.int_at(0);
  m.receiver = row.text_at(1);
  m.dedup_key = row.text_at(2);
  m.record_id = row.int_at(3);  // NULL reads as 0
  m.event = row.text_at(4);
  m.payload = row.text_at(5);
  m.state = parse_or(row.text_at(6), parse_outbox_state, m.state);
  m.attempts = clamp_to_int(row.int_at(7));
  m.created_at = row.time_at(8);
  m.next_attempt_at = row.time_at(9);
  m.delivered_at = row.optional_time_at(10);
  m.last_error = row.text_at(11);
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
  s.bind_int(2, limit_value(limit));
  std::vector<OutboxMessage> out;
  while (s.step()) out.push_back(read_outbox_row(s));
  return out;
}

std::vector<OutboxMessage> SqliteStore::outbox(std::optional<OutboxState> state,
                                               std::size_t limit) {
  std::lock_guard lock(mu_);
  Statement s = prepare("SELECT " MEND_OUTBOX_COLUMNS
                        " FROM outbox WHERE (?1 IS NULL OR state = ?1) ORDER BY id LIMIT ?2");
  if (state) s.bind_text(1, to_string(*state));
  s.bind_int(2, limit_value(limit));
  std::vector<OutboxMessage> out;
  while (s.step()) out.push_back(read_outbox_row(s));
  return out;
}

void SqliteStore::mark_delivered(std::int64_t message_id, WallTime at) {
  std::lock_guard lock(mu_);
  Statement s = prepare(
      "UPDATE outbox SET state = 'delivered', delivered_at = ?2, attempts = attempts + 1"
      " WHERE id = ?1");
  s.bind_int(1, message_id);
  s.bind_time(2, at);
  s.run();
}

void SqliteStore::mark_failed(std::int64_t message_id, int attempts, WallTime next_attempt_at,
                              const std::string& error, bool dead) {
  std::lock_guard lock(mu_);
  Statement s = prepare(
      "UPDATE outbox SET state = ?2, attempts = ?3, next_attempt_at = ?4, last_error = ?5"
      " WHERE id = ?1");
  s.bind_int(1, message_id);
  s.bind_text(2, to_string(dead ? OutboxState::dead : OutboxState::pending));
  s.bind_int(3, attempts);
  s.bind_time(4, next_attempt_at);
  s.bind_text(5, error);
  s.run();
}

// --- Journal -----------------------------------------------------------------------------------

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
  s.bind_int(1, limit_value(limit));
  std::vector<JournalEntry> out;
  while (s.step()) {
    JournalEntry e;
    e.id = s.int_at(0);
    e.task_id = s.text_at(1);
    e.task_type = s.text_at(2);
    e.primary_agent = s.text_at(3);
    e.status = s.text_at(4);
    e.answered_by = s.text_at(5);
    e.attempts = clamp_to_int(s.int_at(6));
    e.record_id = s.int_at(7);
    e.started_at = s.time_at(8);
    e.finished_at = s.time_at(9);
    e.outcome_json = s.text_at(10);
    out.push_back(std::move(e));
  }
  return out;
}

// --- Tasks -------------------------------------------------------------------------------------

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
  t.attempts = clamp_to_int(row.int_at(8));
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
    s.bind_int(1, limit_value(finished));
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
  s.bind_int(1, limit_value(keep));
  s.run();
  return static_cast<std::size_t>(sqlite3_changes(db_));
}

std::int64_t SqliteStore::next_task_number() {
  std::lock_guard lock(mu_);
  Statement s = prepare("SELECT value FROM counters WHERE name = 'next_task_number'");
  return s.step() ? s.int_at(0) : 1;
}

#undef MEND_RECORD_COLUMNS
#undef MEND_OUTBOX_COLUMNS
#undef MEND_JOURNAL_COLUMNS
#undef MEND_TASK_COLUMNS

}  // namespace mend
