// SqliteStore's connection: opening the file, the cache of prepared statements, errors, and
// transactions. The tables' methods are in sqlite_store_{records,outbox,journal,tasks}.cc, the
// schema and its migrations in sqlite_store_schema.cc.
#include "mend/store/sqlite_store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cstring>
#include <utility>

#include "sqlite_store_statement.h"

namespace mend {

SqliteStore::SqliteStore(std::string path, sqlite3* db) : path_(std::move(path)), db_(db) {}

SqliteStore::~SqliteStore() {
  for (auto& [sql, stmt] : statements_) sqlite3_finalize(stmt);
  // The last connection to close checkpoints the WAL into the database file and removes it.
  sqlite3_close_v2(db_);
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
    return sqlite_detail::database_error(path, "cannot open", why);
  }
  std::unique_ptr<SqliteStore> store(new SqliteStore(path, db));
  try {
    store->configure(options);
  } catch (const Exception& e) {
    return e.error();
  }
  return store;
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
  throw Exception(sqlite_detail::database_error(path_, doing, why));
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

}  // namespace mend
