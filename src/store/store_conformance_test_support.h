// File: src/store/store_conformance_test_support.h (tests)
//
// The conformance suite's fixture: every test of the Store interface's behaviour
// (store_conformance_*_test.cc) runs once per store, unchanged:
//   - SQLite: a fresh database file per test, in a temporary directory;
//   - PostgreSQL: a fresh database per test (CREATE DATABASE) in the test program's throwaway
//     server (mend_test/pg_server.h), started once on first use. Without one (no PostgreSQL
//     binaries), the PostgreSQL instances skip with the reason, never pass silently.
// open_store() opens a store on the test's database; a second call opens another store on the same
// database (another connection, as another process or node would), which is also how a test
// reopens it.
//
//   using StoreRecordsTest = StoreTest;
//   INSTANTIATE_TEST_SUITE_P(Stores, StoreRecordsTest, kEveryStore, store_name);
//   TEST_P(StoreRecordsTest, CountsRepeats) { auto store = open_store(); ... }
#ifndef MEND_SRC_STORE_STORE_CONFORMANCE_TEST_SUPPORT_H_
#define MEND_SRC_STORE_STORE_CONFORMANCE_TEST_SUPPORT_H_

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <utility>

#include "mend/core/store.h"
#include "mend/store/pg_store.h"
#include "mend/store/sqlite_store.h"
#include "mend_test/pg_server.h"
#include "mend_test/temp_dir.h"
#include "store_test_support.h"

namespace mend::store_test_support {

enum class Backend : std::uint8_t { sqlite, postgresql };

// How gtest (and so ctest) names a test's store: "GetParam() = postgresql".
inline void PrintTo(Backend backend, std::ostream* os) {
  *os << (backend == Backend::sqlite ? "sqlite" : "postgresql");
}

inline const auto kEveryStore = ::testing::Values(Backend::sqlite, Backend::postgresql);

inline std::string store_name(const ::testing::TestParamInfo<Backend>& info) {
  return info.param == Backend::sqlite ? "Sqlite" : "Postgres";
}

class StoreTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    if (GetParam() == Backend::sqlite) {
      path_ = temp_.file("mend.db");
      return;
    }
    mend::testing::PgServer& server = mend::testing::PgServer::shared();
    if (!server.available())
      GTEST_SKIP() << "PostgreSQL store not tested: " << server.why_unavailable();
    url_ = server.create_database();
  }

  // A store on this test's database (a fresh one the first time); nullptr, with a failure, when it
  // cannot be opened.
  std::unique_ptr<Store> open_store() {
    if (GetParam() == Backend::sqlite) {
      auto opened = SqliteStore::open(path_);
      EXPECT_TRUE(opened.ok()) << (opened.ok() ? "" : opened.error().describe());
      if (!opened.ok()) return nullptr;
      return std::move(*opened);
    }
    auto opened = PgStore::open(url_);
    EXPECT_TRUE(opened.ok()) << (opened.ok() ? "" : opened.error().describe());
    if (!opened.ok()) return nullptr;
    return std::move(*opened);
  }

  mend::testing::TempDir temp_{"mend-store-test"};
  std::string path_;  // SQLite
  std::string url_;   // PostgreSQL
};

}  // namespace mend::store_test_support

#endif  // MEND_SRC_STORE_STORE_CONFORMANCE_TEST_SUPPORT_H_
