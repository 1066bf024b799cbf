// Test support for the SQLite store's tests (sqlite_store_*_test.cc): a fixture with a fresh
// database file per test and a connection of its own to look at it, and records, outbox messages
// and tasks to store.
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

namespace mend::sqlite_store_test_support {

namespace fs = std::filesystem;
using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;

inline constexpr WallTime kT0 = ManualClock::kDefaultWallStart;

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

inline EscalationRecord a_record(std::string fingerprint) {
  EscalationRecord r;
  r.fingerprint = std::move(fingerprint);
  r.title = "code review agent keeps timing out";
  r.created_at = kT0;
  r.last_seen_at = kT0;
  r.sla_due = kT0 + hours(24);
  return r;
}

// Every field set to something other than its default.
inline EscalationRecord a_full_record() {
  EscalationRecord r;
  r.kind = RecordKind::incident;
  r.fingerprint = "00ff00ff00ff00ff";
  r.level = Severity::critical;
  r.tier = 2;
  r.status = RecordStatus::acknowledged;
  r.title = "deployments failing";
  r.description = "every deployment since 10:02 fails\nwith \"quotes\" and 'apostrophes'";
  r.agent = "deployer";
  r.task_type = "deployment";
  r.error_type = ErrorType::database_error;
  r.priority = "critical";
  r.assignee = "on-call-engineer";
  r.channel = "emergency";
  r.occurrences = 1;
  r.created_at = kT0 + milliseconds(1);
  r.last_seen_at = kT0 + milliseconds(2);
  r.sla_due = kT0 + minutes(15);
  r.review_at = kT0 + hours(24);
  r.acknowledged_at = kT0 + minutes(3);
  r.acknowledged_by = "alice";
  r.resolved_at = kT0 + minutes(40);
  r.resolved_by = "bob";
  r.war_room_url = "https://chat.example.com/war-room/INC-1";
  return r;
}

inline void expect_same_record(const EscalationRecord& a, const EscalationRecord& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.kind, b.kind);
  EXPECT_EQ(a.fingerprint, b.fingerprint);
  EXPECT_EQ(a.level, b.level);
  EXPECT_EQ(a.tier, b.tier);
  EXPECT_EQ(a.status, b.status);
  EXPECT_EQ(a.title, b.title);
  EXPECT_EQ(a.description, b.description);
  EXPECT_EQ(a.agent, b.agent);
  EXPECT_EQ(a.task_type, b.task_type);
  EXPECT_EQ(a.error_type, b.error_type);
  EXPECT_EQ(a.priority, b.priority);
  EXPECT_EQ(a.assignee, b.assignee);
  EXPECT_EQ(a.channel, b.channel);
  EXPECT_EQ(a.occurrences, b.occurrences);
  EXPECT_TRUE(a.created_at == b.created_at);
  EXPECT_TRUE(a.last_seen_at == b.last_seen_at);
  EXPECT_TRUE(a.sla_due == b.sla_due);
  EXPECT_TRUE(a.review_at == b.review_at);
  EXPECT_TRUE(a.acknowledged_at == b.acknowledged_at);
  EXPECT_EQ(a.acknowledged_by, b.acknowledged_by);
  EXPECT_TRUE(a.resolved_at == b.resolved_at);
  EXPECT_EQ(a.resolved_by, b.resolved_by);
  EXPECT_EQ(a.war_room_url, b.war_room_url);
}

inline OutboxMessage a_message(std::string receiver, std::string dedup_key,
                               WallTime next_attempt_at) {
  OutboxMessage m;
  m.receiver = std::move(receiver);
  m.dedup_key = std::move(dedup_key);
  m.event = "trigger";
  m.payload = R"({"event":"trigger"})";
  m.created_at = kT0;
  m.next_attempt_at = next_attempt_at;
  return m;
}

inline std::vector<std::int64_t> ids_of(const std::vector<OutboxMessage>& messages) {
  std::vector<std::int64_t> ids;
  for (const OutboxMessage& m : messages) ids.push_back(m.id);
  return ids;
}

inline StoredTask running_task(std::string id, std::string key = "") {
  StoredTask t;
  t.id = std::move(id);
  t.idempotency_key = std::move(key);
  t.request_digest = "digest-of-" + t.id;
  t.type = "deployment";
  t.agent = "deployer";
  t.request_json = R"({"type":"deployment","agent":"deployer","payload":{"build":7}})";
  t.submitted_at = kT0;
  t.deadline_at = kT0 + minutes(5);
  return t;
}

inline TaskWrite accept(StoredTask t) {
  return {TaskWrite::Kind::accept, std::move(t)};
}

}  // namespace mend::sqlite_store_test_support

#endif  // MEND_SRC_STORE_SQLITE_STORE_TEST_SUPPORT_H_
