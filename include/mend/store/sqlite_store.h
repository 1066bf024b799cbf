// File: mend/store/sqlite_store.h
//
// The embedded default `Store` (mend/core/store.h): one SQLite file, in WAL mode, whose schema mend
// creates and migrates itself.
//
//   mend::Result<std::unique_ptr<mend::SqliteStore>> opened = mend::SqliteStore::open("mend.db");
//   if (!opened.ok()) return report(opened.error());   // database_error/high, names the path
//   mend::SqliteStore& store = **opened;
//   store.transaction([&] {                            // record and notification commit together
//     mend::RecordUpsert u = store.open_or_touch(record, clock.wall_now());
//     if (u.created) store.enqueue(message);
//   });
//
// The schema is versioned with `PRAGMA user_version`: open() applies the migrations this build
// knows that the file lacks, each in its own transaction, and refuses (changing nothing) a file
// written by a newer mend, a SQLite file of another application, and a file that is not SQLite.
// Times are stored as INTEGER milliseconds since the Unix epoch, so a time read back is the one
// written truncated to the millisecond. Enums are stored as their lower_snake names; a stored
// name this build cannot parse reads back as the field's default, and the row is kept.
//
// Listing order: records() newest first; timeline() oldest first; outbox() in the order the
// messages were enqueued; due_messages() by next_attempt_at, then enqueue order; journal()
// newest first.
//
// Several SqliteStore objects (in one process or several) may open the same file: every write
// goes through a `BEGIN IMMEDIATE` transaction, so open_or_touch is atomic across them too, and
// a writer waits up to busy_timeout for another one before it fails with database_error.
//
// Thread-safety: every method is safe to call from many threads. One connection serves them all,
// behind a recursive mutex that transaction() holds for the whole of its body: other threads'
// calls wait until it commits, while calls the body makes on its own thread nest. A body must
// therefore not wait for another thread that uses the same store (that would deadlock).
#ifndef MEND_STORE_SQLITE_STORE_H_
#define MEND_STORE_SQLITE_STORE_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "mend/core/result.h"
#include "mend/core/store.h"

struct sqlite3;
struct sqlite3_stmt;

namespace mend {

struct SqliteOptions {
  // false (default): PRAGMA synchronous=NORMAL. With WAL, a commit then survives any crash of
  // the process (it is in the WAL file, which the next open replays); only a power loss or an OS
  // crash may lose the last commits, never the database's consistency. SQLite recommends it for
  // WAL, and it saves an fsync per commit. true: synchronous=FULL, an fsync per commit, so that
  // commits survive power loss as well.
  bool synchronous_full = false;
  // How long a write waits for another connection (another process, or another SqliteStore on
  // the same file) to finish its transaction before it fails with database_error. 5000 ms.
  std::chrono::milliseconds busy_timeout{5000};
};

class SqliteStore final : public Store {
 public:
  // Opens `path`, creating the file when it does not exist, and migrates its schema. ":memory:"
  // opens a private in-memory database (for tests; it is not WAL and dies with the object).
  // Errors (database_error/high, the message naming the path): the directory does not exist or
  // is not writable, the file is not a SQLite database or belongs to another application, its
  // schema is newer than latest_schema_version(), a migration failed (that step is rolled back).
  static Result<std::unique_ptr<SqliteStore>> open(const std::string& path,
                                                   SqliteOptions options = {});
  ~SqliteStore() override;
  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;

  // Nested calls become savepoints: an exception leaving an inner body rolls back that body's
  // writes only (and propagates); the outermost call commits or rolls back everything.
  void transaction(const std::function<void()>& body) override;

  RecordUpsert open_or_touch(const EscalationRecord& fresh, WallTime now) override;
  std::optional<EscalationRecord> record(std::int64_t id) override;
  std::vector<EscalationRecord> records(const RecordFilter& filter) override;  // newest first
  bool update_record(const EscalationRecord& record) override;
  // Throws database_error when entry.record_id names no record (a foreign key).
  void append_timeline(const TimelineEntry& entry) override;
  std::vector<TimelineEntry> timeline(std::int64_t record_id) override;  // oldest first

  bool enqueue(OutboxMessage& message) override;
  std::vector<OutboxMessage> due_messages(WallTime now, std::size_t limit) override;
  std::vector<OutboxMessage> claim_due(WallTime now, std::size_t limit, const std::string& owner,
                                       Duration lease) override;
  bool has_older_pending(const OutboxMessage& message) override;
  std::vector<OutboxMessage> outbox(std::optional<OutboxState> state, std::size_t limit) override;
  // State delivered, delivered_at = at, attempts + 1 (the attempt that got through). last_error
  // is kept, as the history of the earlier failures. Both marks clear the lease, and write
  // nothing (false) for an unknown id, a stale fence or a message no longer pending.
  bool mark_delivered(std::int64_t message_id, std::int64_t fence, WallTime at) override;
  // Sets attempts, next_attempt_at and last_error; state dead when `dead`, else pending.
  bool mark_failed(std::int64_t message_id, std::int64_t fence, int attempts,
                   WallTime next_attempt_at, const std::string& error, bool dead) override;

  std::int64_t append_journal(const JournalEntry& entry) override;
  std::vector<JournalEntry> journal(std::size_t limit) override;  // newest first

  std::vector<std::size_t> write_tasks(const std::vector<TaskWrite>& writes,
                                       std::int64_t next_task_number) override;
  std::vector<StoredTask> load_tasks(std::size_t finished) override;
  std::optional<StoredTask> stored_task(const std::string& id) override;
  std::size_t prune_tasks(std::size_t keep) override;
  std::int64_t next_task_number() override;

  std::string path() const { return path_; }
  // The schema version of the file, which after a successful open() is latest_schema_version().
  int schema_version() const noexcept { return schema_version_; }
  // The newest schema this build knows how to create and read.
  static int latest_schema_version() noexcept;

 private:
  class Statement;  // a cached prepared statement, reset when the Statement goes out of scope

  SqliteStore(std::string path, sqlite3* db);
  void configure(const SqliteOptions& options);  // pragmas and migrations; throws Exception
  void migrate();

  Statement prepare(std::string_view sql);  // `sql` must be a string literal: it keys the cache
  void execute(std::string_view sql);       // a statement that returns no rows
  void roll_back(bool outermost) noexcept;
  [[noreturn]] void fail(std::string_view doing) const;  // throws the connection's last error
  EscalationRecord read_record_row(Statement& row) const;
  OutboxMessage read_outbox_row(Statement& row) const;
  StoredTask read_task_row(Statement& row) const;

  const std::string path_;
  sqlite3* const db_;
  int schema_version_ = 0;
  std::recursive_mutex mu_;
  int depth_ = 0;  // guarded by mu_: how many transaction() calls are open on this connection
  std::unordered_map<std::string_view, sqlite3_stmt*> statements_;  // guarded by mu_
};

}  // namespace mend

#endif  // MEND_STORE_SQLITE_STORE_H_
