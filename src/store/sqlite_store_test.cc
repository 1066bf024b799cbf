#include "mend/sqlite_store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "mend_test/temp_dir.h"

namespace mend {
namespace {

namespace fs = std::filesystem;
using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;

constexpr WallTime kT0 = ManualClock::kDefaultWallStart;

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

EscalationRecord a_record(std::string fingerprint) {
  EscalationRecord r;
  r.fingerprint = std::move(fingerprint);
  r.title = "code review agent keeps timing out";
  r.created_at = kT0;
  r.last_seen_at = kT0;
  r.sla_due = kT0 + hours(24);
  return r;
}

// Every field set to something other than its default.
EscalationRecord a_full_record() {
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

void expect_same_record(const EscalationRecord& a, const EscalationRecord& b) {
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

OutboxMessage a_message(std::string receiver, std::string dedup_key, WallTime next_attempt_at) {
  OutboxMessage m;
  m.receiver = std::move(receiver);
  m.dedup_key = std::move(dedup_key);
  m.event = "trigger";
  m.payload = R"({"event":"trigger"})";
  m.created_at = kT0;
  m.next_attempt_at = next_attempt_at;
  return m;
}

std::vector<std::int64_t> ids_of(const std::vector<OutboxMessage>& messages) {
  std::vector<std::int64_t> ids;
  for (const OutboxMessage& m : messages) ids.push_back(m.id);
  return ids;
}

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

// --- Round trips -------------------------------------------------------------------------------

TEST_F(SqliteStoreTest, EveryFieldOfEveryTableSurvivesAReopen) {
  EscalationRecord full = a_full_record();
  EscalationRecord bare = a_record("bare");  // optional times unset
  TimelineEntry note{.record_id = 0,
                     .at = kT0 + seconds(5),
                     .event = "war_room_opened",
                     .actor = "carol",
                     .detail = "https://chat.example.com/war-room/INC-1"};
  OutboxMessage message = a_message("pagerduty", "INC-1/trigger", kT0 + seconds(30));
  message.event = "reescalate";
  message.state = OutboxState::dead;
  message.attempts = 7;
  message.delivered_at = kT0 + seconds(31);
  message.last_error = "HTTP 500";
  JournalEntry entry{.id = 0,
                     .task_id = "task-42",
                     .task_type = "code_review",
                     .primary_agent = "reviewer",
                     .status = "succeeded_after_retry",
                     .answered_by = "reviewer-2",
                     .attempts = 3,
                     .record_id = 0,
                     .started_at = kT0 + milliseconds(100),
                     .finished_at = kT0 + milliseconds(2345),
                     .outcome_json = R"({"status":"ok","value":[1,2,3]})"};
  {
    auto store = open_store();
    ASSERT_NE(store, nullptr);
    RecordUpsert created = store->open_or_touch(full, kT0);
    ASSERT_TRUE(created.created);
    full.id = created.record.id;
    expect_same_record(created.record, full);
    bare.id = store->open_or_touch(bare, kT0).record.id;
    note.record_id = full.id;
    store->append_timeline(note);
    message.record_id = full.id;
    ASSERT_TRUE(store->enqueue(message));
    entry.record_id = full.id;
    entry.id = store->append_journal(entry);
  }
  auto store = open_store();
  ASSERT_NE(store, nullptr);

  ASSERT_TRUE(store->record(full.id).has_value());
  expect_same_record(*store->record(full.id), full);
  ASSERT_TRUE(store->record(bare.id).has_value());
  expect_same_record(*store->record(bare.id), bare);
  EXPECT_FALSE(store->record(bare.id)->review_at.has_value());

  std::vector<TimelineEntry> timeline = store->timeline(full.id);
  ASSERT_EQ(timeline.size(), 2u);
  EXPECT_EQ(timeline[0].event, "opened");
  EXPECT_EQ(timeline[1].record_id, note.record_id);
  EXPECT_TRUE(timeline[1].at == note.at);
  EXPECT_EQ(timeline[1].event, note.event);
  EXPECT_EQ(timeline[1].actor, note.actor);
  EXPECT_EQ(timeline[1].detail, note.detail);

  std::vector<OutboxMessage> outbox = store->outbox(std::nullopt, 10);
  ASSERT_EQ(outbox.size(), 1u);
  const OutboxMessage& m = outbox[0];
  EXPECT_EQ(m.id, message.id);
  EXPECT_EQ(m.receiver, message.receiver);
  EXPECT_EQ(m.dedup_key, message.dedup_key);
  EXPECT_EQ(m.record_id, message.record_id);
  EXPECT_EQ(m.event, message.event);
  EXPECT_EQ(m.payload, message.payload);
  EXPECT_EQ(m.state, message.state);
  EXPECT_EQ(m.attempts, message.attempts);
  EXPECT_TRUE(m.created_at == message.created_at);
  EXPECT_TRUE(m.next_attempt_at == message.next_attempt_at);
  EXPECT_TRUE(m.delivered_at == message.delivered_at);
  EXPECT_EQ(m.last_error, message.last_error);

  std::vector<JournalEntry> journal = store->journal(10);
  ASSERT_EQ(journal.size(), 1u);
  const JournalEntry& j = journal[0];
  EXPECT_EQ(j.id, entry.id);
  EXPECT_EQ(j.task_id, entry.task_id);
  EXPECT_EQ(j.task_type, entry.task_type);
  EXPECT_EQ(j.primary_agent, entry.primary_agent);
  EXPECT_EQ(j.status, entry.status);
  EXPECT_EQ(j.answered_by, entry.answered_by);
  EXPECT_EQ(j.attempts, entry.attempts);
  EXPECT_EQ(j.record_id, entry.record_id);
  EXPECT_TRUE(j.started_at == entry.started_at);
  EXPECT_TRUE(j.finished_at == entry.finished_at);
  EXPECT_EQ(j.outcome_json, entry.outcome_json);
}

TEST_F(SqliteStoreTest, TimesAreKeptToTheMillisecond) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  EscalationRecord r = a_record("fp");
  r.created_at = kT0 + std::chrono::microseconds(1999);  // 1.999 ms
  RecordUpsert u = store->open_or_touch(r, kT0);
  EXPECT_TRUE(u.record.created_at == kT0 + milliseconds(1));
  EXPECT_TRUE(store->record(u.record.id)->created_at == kT0 + milliseconds(1));
}

TEST_F(SqliteStoreTest, UnparseableStoredValuesReadBackAsDefaults) {
  std::int64_t id = 0;
  std::int64_t message_id = 0;
  {
    auto store = open_store();
    ASSERT_NE(store, nullptr);
    id = store->open_or_touch(a_full_record(), kT0).record.id;
    OutboxMessage m = a_message("slack", "k", kT0);
    ASSERT_TRUE(store->enqueue(m));
    message_id = m.id;
  }
  raw_exec(
      "UPDATE records SET kind = 'spaceship', level = 'apocalyptic', status = '', "
      "error_type = 'gremlins', tier = 99999999999, review_at = 'soon' "
      "WHERE id = " +
      std::to_string(id));
  raw_exec("UPDATE outbox SET state = 'lost', attempts = 'many' WHERE id = " +
           std::to_string(message_id));

  auto store = open_store();
  ASSERT_NE(store, nullptr);
  std::optional<EscalationRecord> r = store->record(id);
  ASSERT_TRUE(r.has_value());
  const EscalationRecord defaults;
  EXPECT_EQ(r->kind, defaults.kind);
  EXPECT_EQ(r->level, defaults.level);
  EXPECT_EQ(r->status, defaults.status);
  EXPECT_EQ(r->error_type, defaults.error_type);
  EXPECT_EQ(r->tier, std::numeric_limits<int>::max());
  EXPECT_TRUE(r->review_at == WallTime{});  // text where a time belongs reads as 0
  EXPECT_EQ(r->agent, "deployer");          // the rest of the row is intact
  std::vector<OutboxMessage> outbox = store->outbox(std::nullopt, 10);
  ASSERT_EQ(outbox.size(), 1u);
  EXPECT_EQ(outbox[0].state, OutboxState::pending);
  EXPECT_EQ(outbox[0].attempts, 0);
}

// --- Records -----------------------------------------------------------------------------------

TEST_F(SqliteStoreTest, OpenOrTouchCountsRepeatsOnOneRecord) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  RecordUpsert first = store->open_or_touch(a_record("fp"), kT0);
  RecordUpsert second = store->open_or_touch(a_record("fp"), kT0 + seconds(10));
  RecordUpsert third = store->open_or_touch(a_record("fp"), kT0 + seconds(20));
  EXPECT_TRUE(first.created);
  EXPECT_FALSE(second.created);
  EXPECT_FALSE(third.created);
  EXPECT_GT(first.record.id, 0);
  EXPECT_EQ(second.record.id, first.record.id);
  EXPECT_EQ(third.record.id, first.record.id);
  EXPECT_EQ(first.record.occurrences, 1);
  EXPECT_EQ(third.record.occurrences, 3);
  EXPECT_TRUE(third.record.last_seen_at == kT0 + seconds(20));
  EXPECT_TRUE(third.record.created_at == kT0);
  expect_same_record(*store->record(first.record.id), third.record);

  EXPECT_EQ(store->records({}).size(), 1u);
  std::vector<TimelineEntry> timeline = store->timeline(first.record.id);
  ASSERT_EQ(timeline.size(), 3u);
  EXPECT_EQ(timeline[0].event, "opened");
  EXPECT_EQ(timeline[1].event, "occurrence");
  EXPECT_EQ(timeline[2].event, "occurrence");
  EXPECT_TRUE(timeline[2].at == kT0 + seconds(20));
  for (const TimelineEntry& e : timeline) EXPECT_EQ(e.actor, "mend");
}

TEST_F(SqliteStoreTest, AnAcknowledgedRecordStillAbsorbsRepeatsButAResolvedOneDoesNot) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  EscalationRecord r = store->open_or_touch(a_record("fp"), kT0).record;
  r.status = RecordStatus::acknowledged;
  r.acknowledged_at = kT0 + minutes(1);
  ASSERT_TRUE(store->update_record(r));
  EXPECT_FALSE(store->open_or_touch(a_record("fp"), kT0 + minutes(2)).created);

  r = *store->record(r.id);
  r.status = RecordStatus::resolved;
  r.resolved_at = kT0 + minutes(3);
  ASSERT_TRUE(store->update_record(r));
  RecordUpsert again = store->open_or_touch(a_record("fp"), kT0 + minutes(4));
  EXPECT_TRUE(again.created);
  EXPECT_NE(again.record.id, r.id);
  EXPECT_EQ(again.record.occurrences, 1);
  EXPECT_EQ(store->record(r.id)->occurrences, 2);  // the resolved one is left alone
  EXPECT_EQ(store->open_or_touch(a_record("fp"), kT0 + minutes(5)).record.id, again.record.id);
}

TEST_F(SqliteStoreTest, UpdateRecordWritesEveryFieldAndReportsAnUnknownId) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  EscalationRecord full = a_full_record();
  full.id = store->open_or_touch(a_record("fp"), kT0).record.id;
  ASSERT_TRUE(store->update_record(full));
  expect_same_record(*store->record(full.id), full);

  full.id = 999;
  EXPECT_FALSE(store->update_record(full));
  EXPECT_FALSE(store->record(999).has_value());
}

TEST_F(SqliteStoreTest, RecordsFiltersByKindStatusAndActivityNewestFirst) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  EscalationRecord incident = a_record("a");
  incident.kind = RecordKind::incident;
  const std::int64_t a = store->open_or_touch(incident, kT0).record.id;
  const std::int64_t b = store->open_or_touch(a_record("b"), kT0).record.id;
  EscalationRecord c = store->open_or_touch(a_record("c"), kT0).record;
  c.status = RecordStatus::resolved;
  ASSERT_TRUE(store->update_record(c));

  auto ids = [&](const RecordFilter& filter) {
    std::vector<std::int64_t> out;
    for (const EscalationRecord& r : store->records(filter)) out.push_back(r.id);
    return out;
  };
  EXPECT_EQ(ids({}), (std::vector<std::int64_t>{c.id, b, a}));
  EXPECT_EQ(ids({.kind = RecordKind::incident}), (std::vector<std::int64_t>{a}));
  EXPECT_EQ(ids({.kind = RecordKind::ticket}), (std::vector<std::int64_t>{c.id, b}));
  EXPECT_EQ(ids({.status = RecordStatus::resolved}), (std::vector<std::int64_t>{c.id}));
  EXPECT_EQ(ids({.active_only = true}), (std::vector<std::int64_t>{b, a}));
  EXPECT_EQ(ids({.limit = 1}), (std::vector<std::int64_t>{c.id}));
  EXPECT_TRUE(ids({.limit = 0}).empty());
}

TEST_F(SqliteStoreTest, ATimelineEntryForAnUnknownRecordIsADatabaseError) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  try {
    store->append_timeline({.record_id = 404, .at = kT0, .event = "notified"});
    FAIL() << "no exception";
  } catch (const Exception& e) {
    EXPECT_EQ(e.error().type, ErrorType::database_error);
    EXPECT_EQ(e.error().severity, Severity::high);
    EXPECT_NE(e.error().message.find("FOREIGN KEY"), std::string::npos) << e.error().message;
  }
  EXPECT_TRUE(store->timeline(404).empty());
}

// --- Concurrency -------------------------------------------------------------------------------

TEST_F(SqliteStoreTest, ThreadsReportingOneFingerprintMakeOneRecord) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  constexpr int kThreads = 4;
  constexpr int kPerThread = 250;
  std::vector<std::thread> threads;
  std::atomic<int> created{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        if (store->open_or_touch(a_record("fp"), kT0 + milliseconds(i)).created) ++created;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(created.load(), 1);
  std::vector<EscalationRecord> records = store->records({});
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].occurrences, kThreads * kPerThread);
  // "opened", occurrences 2..10, then 100 and 1000: the timeline keeps milestones, the count is
  // exact.
  EXPECT_EQ(store->timeline(records[0].id).size(), 12u);
}

TEST_F(SqliteStoreTest, TwoStoresOnOneFileMakeOneRecordToo) {
  auto first = open_store();
  auto second = open_store();
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  constexpr int kPerThread = 50;
  std::vector<std::thread> threads;
  for (SqliteStore* store : {first.get(), second.get(), first.get(), second.get()}) {
    threads.emplace_back([store] {
      for (int i = 0; i < kPerThread; ++i) store->open_or_touch(a_record("fp"), kT0);
    });
  }
  for (std::thread& t : threads) t.join();
  std::vector<EscalationRecord> records = first->records({});
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].occurrences, 4 * kPerThread);
}

TEST_F(SqliteStoreTest, ASecondStoreSeesWhatTheFirstCommitted) {
  auto writer = open_store();
  auto reader = open_store();
  ASSERT_NE(writer, nullptr);
  ASSERT_NE(reader, nullptr);
  EXPECT_TRUE(reader->records({}).empty());
  const std::int64_t id = writer->open_or_touch(a_record("fp"), kT0).record.id;
  OutboxMessage m = a_message("slack", "k", kT0);
  ASSERT_TRUE(writer->enqueue(m));
  ASSERT_TRUE(reader->record(id).has_value());
  EXPECT_EQ(ids_of(reader->due_messages(kT0, 10)), (std::vector<std::int64_t>{m.id}));
  // The dedup key holds across stores: a restarted mend replaying an escalation sends nothing.
  OutboxMessage replay = a_message("slack", "k", kT0);
  EXPECT_FALSE(reader->enqueue(replay));
}

// --- Transactions ------------------------------------------------------------------------------

TEST_F(SqliteStoreTest, AnExceptionRollsBackTheWholeTransaction) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  EXPECT_THROW(store->transaction([&] {
    RecordUpsert u = store->open_or_touch(a_record("fp"), kT0);
    OutboxMessage m = a_message("slack", "k", kT0);
    m.record_id = u.record.id;
    store->enqueue(m);
    store->append_journal({.task_id = "t"});
    throw std::runtime_error("crash before commit");
  }),
               std::runtime_error);
  EXPECT_TRUE(store->records({}).empty());
  EXPECT_TRUE(store->outbox(std::nullopt, 10).empty());
  EXPECT_TRUE(store->journal(10).empty());
  // The store is usable afterwards, and the dedup key was not taken by the rolled-back message.
  OutboxMessage m = a_message("slack", "k", kT0);
  EXPECT_TRUE(store->enqueue(m));
}

TEST_F(SqliteStoreTest, NestedTransactionsCommitOnceAtTheOutermost) {
  auto store = open_store();
  auto observer = open_store();
  ASSERT_NE(store, nullptr);
  ASSERT_NE(observer, nullptr);
  store->transaction([&] {
    store->transaction([&] { store->open_or_touch(a_record("inner"), kT0); });
    store->open_or_touch(a_record("outer"), kT0);
    // The inner transaction returned, yet nothing is committed while the outer one runs.
    EXPECT_TRUE(observer->records({}).empty());
    EXPECT_EQ(store->records({}).size(), 2u);
  });
  EXPECT_EQ(observer->records({}).size(), 2u);
}

TEST_F(SqliteStoreTest, AFailedInnerTransactionRollsBackOnlyItsOwnWrites) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  store->transaction([&] {
    store->open_or_touch(a_record("kept"), kT0);
    try {
      store->transaction([&] {
        store->open_or_touch(a_record("dropped"), kT0);
        throw std::runtime_error("inner failure");
      });
      ADD_FAILURE() << "the inner exception did not propagate";
    } catch (const std::runtime_error&) {
    }
    store->open_or_touch(a_record("kept too"), kT0);
  });
  std::vector<EscalationRecord> records = store->records({});
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0].fingerprint, "kept too");
  EXPECT_EQ(records[1].fingerprint, "kept");
}

TEST_F(SqliteStoreTest, ATransactionHoldsOtherThreadsOffUntilItCommits) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  std::atomic<bool> other_done{false};
  std::thread other;
  store->transaction([&] {
    store->open_or_touch(a_record("fp"), kT0);
    other = std::thread([&] {
      // Waits for the transaction, then counts as a repeat of the record it committed.
      EXPECT_FALSE(store->open_or_touch(a_record("fp"), kT0).created);
      other_done = true;
    });
    EXPECT_FALSE(other_done.load());
  });
  other.join();
  EXPECT_TRUE(other_done.load());
  EXPECT_EQ(store->records({})[0].occurrences, 2);
}

// --- Outbox ------------------------------------------------------------------------------------

TEST_F(SqliteStoreTest, EnqueueIsANoOpForADuplicateReceiverAndDedupKey) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  OutboxMessage first = a_message("slack", "TKT-1/trigger", kT0);
  ASSERT_TRUE(store->enqueue(first));
  EXPECT_GT(first.id, 0);

  OutboxMessage duplicate = a_message("slack", "TKT-1/trigger", kT0 + hours(1));
  duplicate.payload = "different";
  EXPECT_FALSE(store->enqueue(duplicate));
  EXPECT_EQ(duplicate.id, 0);

  OutboxMessage other_receiver = a_message("pagerduty", "TKT-1/trigger", kT0);
  EXPECT_TRUE(store->enqueue(other_receiver));
  EXPECT_NE(other_receiver.id, first.id);

  std::vector<OutboxMessage> all = store->outbox(std::nullopt, 10);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].payload, first.payload);  // the first one was kept as it was
}

TEST_F(SqliteStoreTest, DueMessagesArePendingOnesDueByNowOldestFirst) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  auto add = [&](std::string key, WallTime next, OutboxState state = OutboxState::pending) {
    OutboxMessage m = a_message("slack", std::move(key), next);
    m.state = state;
    EXPECT_TRUE(store->enqueue(m));
    return m.id;
  };
  const std::int64_t at3 = add("a", kT0 + seconds(3));
  const std::int64_t at1 = add("b", kT0 + seconds(1));
  const std::int64_t at1_later_id = add("c", kT0 + seconds(1));
  const std::int64_t at5 = add("d", kT0 + seconds(5));  // due exactly at now
  add("e", kT0 + seconds(6));                           // not yet
  add("f", kT0, OutboxState::delivered);
  add("g", kT0, OutboxState::dead);

  const WallTime now = kT0 + seconds(5);
  EXPECT_EQ(ids_of(store->due_messages(now, 10)),
            (std::vector<std::int64_t>{at1, at1_later_id, at3, at5}));
  EXPECT_EQ(ids_of(store->due_messages(now, 2)), (std::vector<std::int64_t>{at1, at1_later_id}));
  EXPECT_TRUE(store->due_messages(kT0, 10).empty());
  EXPECT_EQ(store->outbox(OutboxState::pending, 10).size(), 5u);
  EXPECT_EQ(store->outbox(OutboxState::delivered, 10).size(), 1u);
  EXPECT_EQ(store->outbox(OutboxState::dead, 10).size(), 1u);
  EXPECT_EQ(store->outbox(std::nullopt, 3).size(), 3u);
}

TEST_F(SqliteStoreTest, MarkFailedReschedulesOrBuriesAndMarkDeliveredCompletes) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  OutboxMessage retried = a_message("slack", "a", kT0);
  OutboxMessage doomed = a_message("slack", "b", kT0);
  ASSERT_TRUE(store->enqueue(retried));
  ASSERT_TRUE(store->enqueue(doomed));

  store->mark_failed(retried.id, 1, kT0 + seconds(30), "HTTP 503", /*dead=*/false);
  store->mark_failed(doomed.id, 5, kT0 + seconds(30), "HTTP 404", /*dead=*/true);
  EXPECT_TRUE(store->due_messages(kT0 + seconds(29), 10).empty());
  std::vector<OutboxMessage> due = store->due_messages(kT0 + seconds(30), 10);
  ASSERT_EQ(ids_of(due), (std::vector<std::int64_t>{retried.id}));
  EXPECT_EQ(due[0].attempts, 1);
  EXPECT_EQ(due[0].last_error, "HTTP 503");
  EXPECT_EQ(due[0].state, OutboxState::pending);
  EXPECT_FALSE(due[0].delivered_at.has_value());

  std::vector<OutboxMessage> dead = store->outbox(OutboxState::dead, 10);
  ASSERT_EQ(ids_of(dead), (std::vector<std::int64_t>{doomed.id}));
  EXPECT_EQ(dead[0].attempts, 5);
  EXPECT_EQ(dead[0].last_error, "HTTP 404");

  store->mark_delivered(retried.id, kT0 + seconds(31));
  EXPECT_TRUE(store->due_messages(kT0 + hours(1), 10).empty());
  std::vector<OutboxMessage> delivered = store->outbox(OutboxState::delivered, 10);
  ASSERT_EQ(ids_of(delivered), (std::vector<std::int64_t>{retried.id}));
  EXPECT_EQ(delivered[0].attempts, 2);
  EXPECT_TRUE(delivered[0].delivered_at == kT0 + seconds(31));
  EXPECT_EQ(delivered[0].last_error, "HTTP 503");

  store->mark_delivered(12345, kT0);  // unknown: ignored
  store->mark_failed(12345, 1, kT0, "x", false);
  EXPECT_EQ(store->outbox(std::nullopt, 10).size(), 2u);
}

TEST_F(SqliteStoreTest, OutboxStateNamesAreStable) {
  EXPECT_EQ(to_string(OutboxState::pending), "pending");
  EXPECT_EQ(to_string(OutboxState::delivered), "delivered");
  EXPECT_EQ(to_string(OutboxState::dead), "dead");
}

// --- Journal -----------------------------------------------------------------------------------

TEST_F(SqliteStoreTest, JournalListsNewestFirst) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  const std::int64_t a = store->append_journal({.task_id = "a", .started_at = kT0});
  const std::int64_t b = store->append_journal({.task_id = "b", .started_at = kT0});
  const std::int64_t c = store->append_journal({.task_id = "c", .started_at = kT0});
  EXPECT_LT(a, b);
  EXPECT_LT(b, c);
  std::vector<JournalEntry> all = store->journal(10);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].task_id, "c");
  EXPECT_EQ(all[2].task_id, "a");
  std::vector<JournalEntry> two = store->journal(2);
  ASSERT_EQ(two.size(), 2u);
  EXPECT_EQ(two[0].id, c);
  EXPECT_EQ(two[1].id, b);
  EXPECT_EQ(two[0].record_id, 0);  // none
}

// --- Tasks -------------------------------------------------------------------------------------

StoredTask running_task(std::string id, std::string key = "") {
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

TaskWrite accept(StoredTask t) {
  return {TaskWrite::Kind::accept, std::move(t)};
}

TEST_F(SqliteStoreTest, AnAcceptedTaskAndItsProgressSurviveAReopen) {
  {
    auto store = open_store();
    ASSERT_NE(store, nullptr);
    EXPECT_TRUE(store->write_tasks({accept(running_task("task-1", "key-1"))}, 2).empty());
    StoredTask waiting;
    waiting.id = "task-1";
    waiting.call_in_flight = false;
    waiting.attempts = 2;
    store->write_tasks({{TaskWrite::Kind::progress, waiting}}, 2);
  }
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  std::vector<StoredTask> loaded = store->load_tasks(10);
  ASSERT_EQ(loaded.size(), 1u);
  const StoredTask& t = loaded[0];
  EXPECT_EQ(t.id, "task-1");
  EXPECT_EQ(t.idempotency_key, "key-1");
  EXPECT_EQ(t.request_digest, "digest-of-task-1");
  EXPECT_EQ(t.type, "deployment");
  EXPECT_EQ(t.agent, "deployer");
  EXPECT_EQ(t.request_json, running_task("x").request_json);
  EXPECT_FALSE(t.done);
  EXPECT_FALSE(t.call_in_flight);
  EXPECT_EQ(t.attempts, 2);
  EXPECT_EQ(t.submitted_at, kT0);
  EXPECT_EQ(t.deadline_at, kT0 + minutes(5));
  EXPECT_FALSE(t.finished_at.has_value());
  EXPECT_EQ(store->next_task_number(), 2);
}

TEST_F(SqliteStoreTest, AFinishedTaskKeepsItsOutcomeAndDropsItsRequest) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  store->write_tasks({accept(running_task("task-1"))}, 2);
  StoredTask done;
  done.id = "task-1";
  done.attempts = 3;
  done.status = "fallback";
  done.outcome_json = R"({"status":"fallback"})";
  done.finished_at = kT0 + seconds(9);
  store->write_tasks({{TaskWrite::Kind::finish, done}}, 2);
  std::optional<StoredTask> t = store->stored_task("task-1");
  ASSERT_TRUE(t.has_value());
  EXPECT_TRUE(t->done);
  EXPECT_EQ(t->request_json, "");
  EXPECT_EQ(t->status, "fallback");
  EXPECT_EQ(t->outcome_json, R"({"status":"fallback"})");
  EXPECT_EQ(t->finished_at, kT0 + seconds(9));
  EXPECT_EQ(t->attempts, 3);
  EXPECT_FALSE(store->stored_task("task-2").has_value());
}

TEST_F(SqliteStoreTest, AStoredIdOrIdempotencyKeyRefusesOnlyItsOwnAccept) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  store->write_tasks({accept(running_task("a", "k1"))}, 1);
  std::vector<std::size_t> refused =
      store->write_tasks({accept(running_task("b", "k2")), accept(running_task("a", "k3")),
                          accept(running_task("c", "k1")), accept(running_task("d"))},
                         1);
  EXPECT_EQ(refused, (std::vector<std::size_t>{1, 2}));
  std::vector<std::string> ids;
  for (const StoredTask& t : store->load_tasks(10)) ids.push_back(t.id);
  EXPECT_EQ(ids, (std::vector<std::string>{"a", "b", "d"}));
  // Tasks without a key do not clash with one another.
  EXPECT_TRUE(store->write_tasks({accept(running_task("e"))}, 1).empty());
}

TEST_F(SqliteStoreTest, TheTaskCounterOnlyRises) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->next_task_number(), 1);
  store->write_tasks({}, 40);
  store->write_tasks({}, 7);
  EXPECT_EQ(store->next_task_number(), 40);
}

TEST_F(SqliteStoreTest, LoadKeepsEveryRunningTaskAndTheNewestFinishedOnesAndPruneDropsTheRest) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  std::vector<TaskWrite> writes;
  for (int i = 1; i <= 6; ++i) writes.push_back(accept(running_task("t" + std::to_string(i))));
  store->write_tasks(writes, 7);
  // t1, t3 and t5 finish, t5 first and t1 last; t2, t4 and t6 still run.
  for (int i : {5, 3, 1}) {
    StoredTask done;
    done.id = "t" + std::to_string(i);
    done.status = "succeeded";
    done.finished_at = kT0 + seconds(10 - i);
    store->write_tasks({{TaskWrite::Kind::finish, done}}, 7);
  }
  std::vector<std::string> ids;
  for (const StoredTask& t : store->load_tasks(2)) ids.push_back(t.id);
  EXPECT_EQ(ids, (std::vector<std::string>{"t1", "t2", "t3", "t4", "t6"}));  // t5 finished first
  EXPECT_EQ(store->prune_tasks(1), 2u);
  ids.clear();
  for (const StoredTask& t : store->load_tasks(100)) ids.push_back(t.id);
  EXPECT_EQ(ids, (std::vector<std::string>{"t1", "t2", "t4", "t6"}));
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
