// File: mend/store/pg_store.h
//
// The shared `Store` (mend/core/store.h): PostgreSQL, so that several mend nodes can keep one set
// of tickets, incidents, notifications and tasks. Same semantics as SqliteStore
// (mend/store/sqlite_store.h); the conformance tests (src/store/store_conformance_*_test.cc) run
// unchanged against both.
//
//   mend::Result<std::unique_ptr<mend::PgStore>> opened =
//       mend::PgStore::open("postgresql://mend@db.example.com:5432/mend");
//   if (!opened.ok()) return report(opened.error());   // database_error/high, names the server
//   mend::PgStore& store = **opened;
//   store.transaction([&] {                            // record and notification commit together
//     mend::RecordUpsert u = store.open_or_touch(record, clock.wall_now());
//     if (u.created) store.enqueue(message);
//   });
//
// The URL is anything libpq takes as a connection string (a postgresql:// URL or key=value
// words; a password may come from ~/.pgpass or PGPASSWORD). The tables live in the connection's
// current schema (the first of its search_path), so `?options=-csearch_path%3Dmend` keeps them
// apart from other applications in the same database.
//
// Schema: versioned migrations in a `schema_version` table. open() applies the ones this build
// knows that the database lacks, all in one transaction that holds a transaction-level advisory
// lock, so that two nodes starting together migrate once; it refuses (changing nothing) a database
// whose schema is newer than latest_schema_version(), and one that has mend's table names without
// mend's schema_version (another application's tables).
//
// Values are stored as in SqliteStore: times as BIGINT milliseconds since the Unix epoch (a time
// read back is the one written truncated to the millisecond), enums by their lower_snake names (a
// name this build cannot parse reads back as the field's default). PostgreSQL's text holds UTF-8
// without NUL bytes only: a string that is not valid UTF-8, or holds a NUL, is stored with each
// offending byte replaced by U+FFFD, instead of failing the write.
//
// Cluster property: one active (open or acknowledged) record per fingerprint is a UNIQUE partial
// index, and open_or_touch is an atomic UPDATE, then INSERT ... ON CONFLICT ... DO UPDATE, so that
// any number of nodes reporting one fingerprint make one record and count every occurrence.
//
// Connections: a pool of at most PgOptions::pool_size, opened on demand; each prepares every
// statement it runs once (PQprepare) and binds all parameters (nothing is spliced into SQL). A
// connection found broken (the server restarted, the network dropped) is closed and replaced on
// the next call, so a store outlives an outage of its database.
//
// Errors: methods throw mend::Exception carrying a database_error/high Error (kind "database", the
// message naming the server and the SQLSTATE), as SqliteStore does; callers (the Escalator's
// backlog, the TaskWriter) keep and retry what failed. is_transient() tells the failures worth an
// immediate retry (a lost connection, a serialization failure, a deadlock, no free connection in
// time) from the others (a constraint, a full disk); a single statement outside transaction()
// that fails with a serialization failure or deadlock is retried by the store itself (it was
// rolled back whole). A statement that fails inside transaction() aborts the transaction (as
// PostgreSQL does): let the exception leave the body, or catch it around a nested transaction()
// (a savepoint) to go on with the rest.
//
// Thread-safety: every method is safe to call from many threads; each call borrows a pooled
// connection. transaction() pins one connection to the calling thread for the whole body: calls
// the body makes on that thread (nested transaction()s included) use it, and other threads use
// other connections, waiting only where PostgreSQL's row locks make them (a second open_or_touch
// of the fingerprint the body inserted waits for its commit). A body must not wait for another
// thread that uses the store on a row the body holds (that would deadlock), and a body on every
// pooled connection at once makes further callers wait up to PgOptions::acquire_timeout.
#ifndef MEND_STORE_PG_STORE_H_
#define MEND_STORE_PG_STORE_H_

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "mend/core/result.h"
#include "mend/core/store.h"
#include "mend/core/thread_annotations.h"

namespace mend {

struct PgOptions {
  // Connections open at most. Each call holds one for its duration, a transaction() for its body.
  std::size_t pool_size = 4;
  // How long a call waits for a free connection when all pool_size are busy before it fails with
  // a transient database_error.
  std::chrono::milliseconds acquire_timeout{5000};
  // How long opening one connection may take (libpq's connect_timeout, whole seconds, at least 1)
  // unless the URL sets connect_timeout itself.
  std::chrono::seconds connect_timeout{5};
};

namespace pg_detail {
class Connection;
class Params;
class Rows;
}  // namespace pg_detail

class PgStore final : public Store {
 public:
  // Connects (one connection, to check the URL and the server), and migrates the schema.
  // Errors (database_error/high, the message naming the server without its password): a URL libpq
  // cannot parse, a server that cannot be reached or refuses the login, a schema newer than
  // latest_schema_version(), tables of another application, a migration that failed (nothing of
  // it is left).
  static Result<std::unique_ptr<PgStore>> open(const std::string& url, PgOptions options = {});
  ~PgStore() override;
  PgStore(const PgStore&) = delete;
  PgStore& operator=(const PgStore&) = delete;

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
  // As SqliteStore: delivered, delivered_at = at, attempts + 1, last_error kept; the lease
  // cleared; false, and nothing written, for an unknown id, a stale fence or a message no longer
  // pending.
  bool mark_delivered(std::int64_t message_id, std::int64_t fence, WallTime at) override;
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

  // The server as error messages name it: postgresql://user@host:port/dbname, no password.
  const std::string& server() const noexcept { return server_; }
  // The schema version of the database, which after a successful open() is
  // latest_schema_version().
  int schema_version() const noexcept { return schema_version_; }
  static int latest_schema_version() noexcept;
  // Connections open now (idle and in use); never more than PgOptions::pool_size.
  std::size_t open_connections() const;
  // True for an error this store threw that is worth retrying at once: the connection was lost,
  // a serialization failure or deadlock (SQLSTATE class 40), the server is shutting down or out of
  // connections, or no pooled connection was free in time.
  static bool is_transient(const Error& error) noexcept;

 private:
  class Lease;  // a connection borrowed from the pool, or the one pinned to this thread

  PgStore(std::string conninfo, std::string server, PgOptions options);
  std::unique_ptr<pg_detail::Connection> connect();  // throws Exception
  void migrate();
  Lease acquire();
  // Runs one statement on this thread's pinned connection, or a borrowed one (as a transaction of
  // its own, retried when PostgreSQL rolled it back as a serialization failure or deadlock).
  pg_detail::Rows run(std::string_view sql, const pg_detail::Params& params,
                      std::string_view doing = {});
  pg_detail::Rows run(std::string_view sql);
  void release(std::unique_ptr<pg_detail::Connection> connection) noexcept;

  const std::string conninfo_;
  const std::string server_;
  const PgOptions options_;
  int schema_version_ = 0;

  mutable Mutex mu_;
  std::condition_variable freed_;  // a connection went back to the pool, or was closed
  std::vector<std::unique_ptr<pg_detail::Connection>> idle_ MEND_GUARDED_BY(mu_);
  std::size_t open_ MEND_GUARDED_BY(mu_) = 0;  // idle and in use
  // The connection a running transaction() pinned to its thread.
  std::unordered_map<std::thread::id, pg_detail::Connection*> pinned_ MEND_GUARDED_BY(mu_);
};

}  // namespace mend

#endif  // MEND_STORE_PG_STORE_H_
