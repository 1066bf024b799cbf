// Test support for the SQLite store's own tests (sqlite_store_*_test.cc; the Store interface's
// tests, which run against every store, are store_conformance_*_test.cc): a fixture with a fresh
// database file per test and a connection of its own to look at it, and (store_test_support.h)
// records, outbox messages and tasks to store.
#ifndef MEND_SRC_STORE_SQLITE_STORE_TEST_SUPPORT_H_
#define MEND_SRC_STORE_SQLITE_STORE_TEST_SUPPORT_H_

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "mend/store/sqlite_store.h"
#include "mend_test/temp_dir.h"
#include "store_test_support.h"

namespace mend::sqlite_store_test_support {

namespace fs = std::filesystem;
using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;

using store_test_support::kT0;

// A fresh directory per test, removed afterwards with everything in it.
class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = temp_.path();
    path_ = temp_.file("mend.db");
  }

  std::unique_ptr<SqliteStore> open_store(SqliteOptions options = {}) {
    auto opened = SqliteStore::open(path_, options);
    EXPECT_TRUE(opened.ok()) << (opened.ok() ? "" : opened.error().describe());
    return opened.ok() ? std::move(*opened) : nullptr;
  }

  // A connection of its own, to look at the file the way another program would.
  std::int64_t raw_int(const std::string& sql) {
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    sqlite3_stmt* stmt = nullptr;
    std::int64_t value = -1;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW) {
      value = sqlite3_column_int64(stmt, 0);
    } else {
      ADD_FAILURE() << sql << ": " << sqlite3_errmsg(db);
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return value;
  }
  void raw_exec(const std::string& sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK)
        << sql << ": " << sqlite3_errmsg(db);
    sqlite3_close(db);
  }

  mend::testing::TempDir temp_{"mend-store-test"};
  fs::path dir_;
  std::string path_;
};

using store_test_support::a_full_record;
using store_test_support::a_message;
using store_test_support::a_record;
using store_test_support::accept;
using store_test_support::expect_same_record;
using store_test_support::ids_of;
using store_test_support::running_task;

}  // namespace mend::sqlite_store_test_support

#endif  // MEND_SRC_STORE_SQLITE_STORE_TEST_SUPPORT_H_
