// Test support: another program takes a SQLite database's write lock and keeps it until
// released, so that the code under test meets a store that refuses writes (SQLITE_BUSY once its
// busy timeout passes), as it would behind a stuck writer or a file it cannot lock.
#ifndef MEND_TESTS_SUPPORT_WRITE_LOCK_HOLDER_H_
#define MEND_TESTS_SUPPORT_WRITE_LOCK_HOLDER_H_

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <string>

namespace mend::testing {

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
