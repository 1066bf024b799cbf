// Opening the SQLite store: an empty file migrated to the latest schema, an up-to-date one
// reopened as it is, files it must refuse left unchanged, and a new file's permissions.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "mend/store/sqlite_store.h"
#include "sqlite_store_test_support.h"

namespace mend {
namespace {

namespace fs = std::filesystem;
using sqlite_store_test_support::a_record;
using sqlite_store_test_support::accept;
using sqlite_store_test_support::kT0;
using sqlite_store_test_support::running_task;
using sqlite_store_test_support::SqliteStoreTest;

// --- Opening and migrations --------------------------------------------------------------------

TEST_F(SqliteStoreTest, MigratesAnEmptyFileToTheLatestSchemaInWalMode) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  EXPECT_GE(SqliteStore::latest_schema_version(), 1);
  EXPECT_EQ(store->schema_version(), SqliteStore::latest_schema_version());
  EXPECT_EQ(store->path(), path_);
  EXPECT_EQ(raw_int("PRAGMA user_version"), SqliteStore::latest_schema_version());
  EXPECT_NE(raw_int("PRAGMA application_id"), 0);
  EXPECT_EQ(raw_int("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name IN "
                    "('records', 'timeline', 'outbox', 'journal', 'tasks', 'counters')"),
            6);
  EXPECT_EQ(raw_int("SELECT journal_mode = 'wal' FROM pragma_journal_mode"), 1);
}

TEST_F(SqliteStoreTest, ReopeningAnUpToDateFileRunsNoMigrationAndKeepsItsData) {
  std::int64_t id = 0;
  {
    auto store = open_store();
    ASSERT_NE(store, nullptr);
    id = store->open_or_touch(a_record("fp"), kT0).record.id;
  }
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->schema_version(), SqliteStore::latest_schema_version());
  ASSERT_TRUE(store->record(id).has_value());
  EXPECT_EQ(store->record(id)->fingerprint, "fp");
}

TEST_F(SqliteStoreTest, RefusesAFileWithANewerSchemaAndLeavesItAsItWas) {
  { ASSERT_NE(open_store(), nullptr); }
  const int newer = SqliteStore::latest_schema_version() + 1;
  raw_exec("PRAGMA user_version = " + std::to_string(newer));

  auto opened = SqliteStore::open(path_);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.error().type, ErrorType::database_error);
  EXPECT_EQ(opened.error().severity, Severity::high);
  EXPECT_NE(opened.error().message.find(path_), std::string::npos) << opened.error().message;
  EXPECT_NE(opened.error().message.find("newer"), std::string::npos) << opened.error().message;
  EXPECT_EQ(raw_int("PRAGMA user_version"), newer);
}

TEST_F(SqliteStoreTest, RefusesAFileThatIsNotADatabaseWithoutChangingIt) {
  std::string garbage;
  for (int i = 0; i < 8192; ++i) garbage.push_back(static_cast<char>((i * 7919 + 13) % 251));
  { std::ofstream(path_, std::ios::binary) << garbage; }

  auto opened = SqliteStore::open(path_);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.error().type, ErrorType::database_error);
  EXPECT_EQ(opened.error().severity, Severity::high);
  EXPECT_NE(opened.error().message.find(path_), std::string::npos) << opened.error().message;
  EXPECT_NE(opened.error().message.find("not a database"), std::string::npos)
      << opened.error().message;
  std::ifstream in(path_, std::ios::binary);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), garbage);
}

TEST_F(SqliteStoreTest, RefusesAnotherApplicationsDatabase) {
  raw_exec("CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT)");
  auto opened = SqliteStore::open(path_);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.error().type, ErrorType::database_error);
  EXPECT_NE(opened.error().message.find("another application"), std::string::npos)
      << opened.error().message;
  EXPECT_EQ(raw_int("SELECT count(*) FROM sqlite_schema"), 1);  // no mend table was added
}

TEST_F(SqliteStoreTest, FailsClearlyWhenTheDirectoryDoesNotExist) {
  const std::string missing = (dir_ / "no" / "such" / "dir" / "mend.db").string();
  auto opened = SqliteStore::open(missing);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.error().type, ErrorType::database_error);
  EXPECT_EQ(opened.error().severity, Severity::high);
  EXPECT_NE(opened.error().message.find(missing), std::string::npos) << opened.error().message;
  EXPECT_NE(opened.error().message.find("cannot open"), std::string::npos)
      << opened.error().message;
  EXPECT_FALSE(fs::exists(dir_ / "no"));
}

TEST_F(SqliteStoreTest, OpensAnInMemoryDatabase) {
  auto opened = SqliteStore::open(":memory:");
  ASSERT_TRUE(opened.ok()) << opened.error().describe();
  EXPECT_TRUE((*opened)->open_or_touch(a_record("fp"), kT0).created);
  EXPECT_EQ((*opened)->records({}).size(), 1u);
}

TEST_F(SqliteStoreTest, ANewDatabaseFileIsReadableByItsOwnerOnly) {
  {
    auto store = open_store();
    ASSERT_NE(store, nullptr);
    store->write_tasks({accept(running_task("task-1"))}, 2);
    EXPECT_EQ(fs::status(path_).permissions() & fs::perms::all,
              fs::perms::owner_read | fs::perms::owner_write);
    const std::string wal = path_ + "-wal";
    ASSERT_TRUE(fs::exists(wal));
    EXPECT_EQ(fs::status(wal).permissions() & fs::perms::all,
              fs::perms::owner_read | fs::perms::owner_write);
  }
  // An existing file keeps the permissions its owner gave it.
  fs::permissions(path_, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(fs::status(path_).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);
}

}  // namespace
}  // namespace mend
