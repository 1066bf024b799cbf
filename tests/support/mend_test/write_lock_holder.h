// Test support: another program takes a SQLite database's write lock and keeps it until
// released, so that the code under test meets a store that refuses writes (SQLITE_BUSY once its
// busy timeout passes), as it would behind a stuck writer or a file it cannot lock; and the store
// to put behind it, one that gives up at once.
#ifndef MEND_TESTS_SUPPORT_WRITE_LOCK_HOLDER_H_
#define MEND_TESTS_SUPPORT_WRITE_LOCK_HOLDER_H_

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <chrono>
#include <memory>
#include <string>

#include "mend/store/sqlite_store.h"

namespace mend::testing {

// The store under test, with a busy timeout of 1 ms: while a WriteLockHolder holds its lock, a
// write fails at once instead of after the default wait. Null (and a test failure) when it cannot
// be opened.
inline std::unique_ptr<SqliteStore> open_store_that_fails_fast(const std::string& path) {
  SqliteOptions options;
  options.busy_timeout = std::chrono::milliseconds(1);
  auto opened = SqliteStore::open(path, options);
  if (!opened.ok()) {
    ADD_FAILURE() << opened.error().describe();
    return nullptr;
  }
  return std::move(*opened);
}

class WriteLockHolder {
 public:
  explicit WriteLockHolder(const std::string& path) {
    EXPECT_EQ(sqlite3_open(path.c_str(), &db_), SQLITE_OK);
    EXPECT_EQ(sqlite3_exec(db_, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr), SQLITE_OK);
  }
  ~WriteLockHolder() { release(); }
  WriteLockHolder(const WriteLockHolder&) = delete;
  WriteLockHolder& operator=(const WriteLockHolder&) = delete;
  void release() {
    if (db_ == nullptr) return;
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    sqlite3_close(db_);
    db_ = nullptr;
  }

 private:
  sqlite3* db_ = nullptr;
};

}  // namespace mend::testing

#endif  // MEND_TESTS_SUPPORT_WRITE_LOCK_HOLDER_H_
