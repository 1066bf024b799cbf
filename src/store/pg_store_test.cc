// The PostgreSQL store's own tests (the Store interface's are store_conformance_*_test.cc):
// migrations (one version table, two nodes at once, refusals), errors (an unreachable server, a
// lost connection, a failed statement inside a transaction), text PostgreSQL cannot hold, the
// bounded pool, and the cross-node property: two stores on one database, one record.
#include "mend/store/pg_store.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "mend_test/pg_server.h"
#include "mend_test/ports.h"
#include "store_test_support.h"

namespace mend {
namespace {

using std::chrono::milliseconds;
using store_test_support::a_full_record;
using store_test_support::a_message;
using store_test_support::a_record;
using store_test_support::kT0;

class PgStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!server().available()) {
      GTEST_SKIP() << "PostgreSQL store not tested: " << server().why_unavailable();
    }
    url_ = server().create_database();
    dbname_ = url_.substr(url_.rfind('/') + 1);
  }

  static mend::testing::PgServer& server() { return mend::testing::PgServer::shared(); }

  std::unique_ptr<PgStore> open_store(PgOptions options = {}) {
    auto opened = PgStore::open(url_, options);
    EXPECT_TRUE(opened.ok()) << (opened.ok() ? "" : opened.error().describe());
    return opened.ok() ? std::move(*opened) : nullptr;
  }
  std::int64_t query_int(const std::string& sql) { return server().query_int(dbname_, sql); }
  void exec(const std::string& sql) { server().exec(dbname_, sql); }

  std::string url_;
  std::string dbname_;
};

// --- Migrations --------------------------------------------------------------------------------

TEST_F(PgStoreTest, MigratesAFreshDatabaseAndRecordsItsVersion) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  EXPECT_GE(PgStore::latest_schema_version(), 1);
  EXPECT_EQ(store->schema_version(), PgStore::latest_schema_version());
  EXPECT_EQ(query_int("SELECT version FROM schema_version"), PgStore::latest_schema_version());
  EXPECT_EQ(query_int("SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename IN"
                      " ('records', 'timeline', 'outbox', 'journal', 'tasks', 'counters')"),
            6);
  // One active record per fingerprint is the database's rule, not only the store's.
  EXPECT_EQ(query_int("SELECT count(*) FROM pg_indexes WHERE indexname ="
                      " 'records_one_active_per_fingerprint' AND indexdef LIKE '%UNIQUE%'"),
            1);
  // Reopening runs no migration and keeps the data.
  const std::int64_t id = store->open_or_touch(a_record("fp"), kT0).record.id;
  store.reset();
  auto again = open_store();
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again->schema_version(), PgStore::latest_schema_version());
  ASSERT_TRUE(again->record(id).has_value());
}

TEST_F(PgStoreTest, NodesStartingTogetherMigrateOnce) {
  constexpr int kNodes = 4;
  std::vector<std::thread> threads;
  std::atomic<int> opened{0};
  for (int i = 0; i < kNodes; ++i) {
    threads.emplace_back([&] {
      auto store = PgStore::open(url_);
      EXPECT_TRUE(store.ok()) << (store.ok() ? "" : store.error().describe());
      if (store.ok()) ++opened;
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(opened.load(), kNodes);
  EXPECT_EQ(query_int("SELECT count(*) FROM schema_version"), 1);
  EXPECT_EQ(query_int("SELECT version FROM schema_version"), PgStore::latest_schema_version());
}

TEST_F(PgStoreTest, RefusesANewerSchemaAndLeavesItAsItWas) {
  { ASSERT_NE(open_store(), nullptr); }
  const int newer = PgStore::latest_schema_version() + 1;
  exec("UPDATE schema_version SET version = " + std::to_string(newer));
  auto opened = PgStore::open(url_);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.error().type, ErrorType::database_error);
  EXPECT_EQ(opened.error().severity, Severity::high);
  EXPECT_FALSE(PgStore::is_transient(opened.error()));
  EXPECT_NE(opened.error().message.find("newer"), std::string::npos) << opened.error().message;
  EXPECT_NE(opened.error().message.find(dbname_), std::string::npos) << opened.error().message;
  EXPECT_EQ(query_int("SELECT version FROM schema_version"), newer);
}

TEST_F(PgStoreTest, RefusesAnotherApplicationsTables) {
  exec("CREATE TABLE records (id INTEGER PRIMARY KEY, owner TEXT)");
  auto opened = PgStore::open(url_);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.error().type, ErrorType::database_error);
  EXPECT_NE(opened.error().message.find("another application"), std::string::npos)
      << opened.error().message;
  EXPECT_EQ(query_int("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"), 1);
}

TEST_F(PgStoreTest, KeepsItsTablesInTheSchemaTheUrlNames) {
  exec("CREATE SCHEMA mend_here");
  auto opened = PgStore::open(url_ + "?options=-csearch_path%3Dmend_here");
  ASSERT_TRUE(opened.ok()) << opened.error().describe();
  EXPECT_TRUE((*opened)->open_or_touch(a_record("fp"), kT0).created);
  EXPECT_EQ(query_int("SELECT count(*) FROM mend_here.records"), 1);
  EXPECT_EQ(query_int("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"), 0);
}

// --- Errors ------------------------------------------------------------------------------------

TEST_F(PgStoreTest, AnUnreachableServerIsATransientDatabaseErrorThatHidesThePassword) {
  mend::testing::RefusingPort refusing;
  const std::string port = refusing.url().substr(refusing.url().rfind(':') + 1);
  const std::string url = "postgresql://mend:s3cret@127.0.0.1:" + port + "/mend";
  auto opened = PgStore::open(url);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.error().type, ErrorType::database_error);
  EXPECT_EQ(opened.error().severity, Severity::high);
  EXPECT_EQ(opened.error().kind, "database");
  EXPECT_TRUE(PgStore::is_transient(opened.error()));
  EXPECT_NE(opened.error().message.find("postgresql://mend@127.0.0.1:" + port + "/mend"),
            std::string::npos)
      << opened.error().message;
  EXPECT_EQ(opened.error().message.find("s3cret"), std::string::npos) << opened.error().message;

  auto invalid = PgStore::open("postgresql://[not a url");
  ASSERT_FALSE(invalid.ok());
  EXPECT_EQ(invalid.error().type, ErrorType::database_error);
  EXPECT_FALSE(PgStore::is_transient(invalid.error()));
}

TEST_F(PgStoreTest, AConnectionTheServerDroppedIsReplaced) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  store->open_or_touch(a_record("fp"), kT0);
  exec(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database()"
      " AND pid <> pg_backend_pid()");
  // The first call on the dropped connection may fail, as a transient error; the store then
  // opens a fresh connection, and nothing that was committed is lost.
  try {
    store->records({});
  } catch (const Exception& e) {
    EXPECT_TRUE(PgStore::is_transient(e.error())) << e.error().describe();
  }
  std::vector<EscalationRecord> records = store->records({});
  ASSERT_EQ(records.size(), 1u);
  EXPECT_FALSE(store->open_or_touch(a_record("fp"), kT0).created);
}

TEST_F(PgStoreTest, AStatementThatFailedInsideATransactionFailsItsCommit) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  try {
    store->transaction([&] {
      store->open_or_touch(a_record("fp"), kT0);
      try {
        store->append_timeline({.record_id = 404, .at = kT0, .event = "notified"});
      } catch (const Exception&) {
        // Swallowed: PostgreSQL has aborted the transaction all the same.
      }
    });
    FAIL() << "the transaction committed";
  } catch (const Exception& e) {
    EXPECT_EQ(e.error().type, ErrorType::database_error);
    EXPECT_NE(e.error().message.find("rolled back"), std::string::npos) << e.error().message;
  }
  EXPECT_TRUE(store->records({}).empty());
  // A failed statement caught around a nested transaction (a savepoint) leaves the rest.
  store->transaction([&] {
    store->open_or_touch(a_record("fp"), kT0);
    try {
      store->transaction(
          [&] { store->append_timeline({.record_id = 404, .at = kT0, .event = "notified"}); });
    } catch (const Exception&) {
    }
  });
  EXPECT_EQ(store->records({}).size(), 1u);
}

TEST_F(PgStoreTest, ADeadlockIsATransientError) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  EXPECT_FALSE(PgStore::is_transient(
      Error::classified_as(ErrorType::database_error, Severity::high, "not the store's")));
  const EscalationRecord first = store->open_or_touch(a_record("a"), kT0).record;
  const EscalationRecord second = store->open_or_touch(a_record("b"), kT0).record;
  // Two transactions update the two records in opposite orders: PostgreSQL breaks the deadlock
  // by failing one of them (SQLSTATE 40P01), which callers may retry at once.
  std::atomic<int> holding{0};
  std::atomic<int> transient{0};
  std::atomic<int> committed{0};
  auto cross = [&](const EscalationRecord& mine, const EscalationRecord& theirs) {
    try {
      store->transaction([&] {
        store->update_record(mine);
        holding.fetch_add(1);
        while (holding.load() < 2) std::this_thread::yield();
        store->update_record(theirs);
      });
      ++committed;
    } catch (const Exception& e) {
      EXPECT_TRUE(PgStore::is_transient(e.error())) << e.error().describe();
      EXPECT_NE(e.error().message.find("40P01"), std::string::npos) << e.error().message;
      ++transient;
    }
  };
  std::thread a(cross, first, second);
  std::thread b(cross, second, first);
  a.join();
  b.join();
  EXPECT_EQ(committed.load(), 1);
  EXPECT_EQ(transient.load(), 1);
}

// --- Values ------------------------------------------------------------------------------------

TEST_F(PgStoreTest, TextPostgresCannotHoldIsStoredWithReplacementCharacters) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  EscalationRecord r = a_record("fp");
  constexpr char kTitle[] = "bad \xC3\x28 byte, a NUL \0 here, and \xE2\x82\xAC fine";
  r.title = std::string(kTitle, sizeof kTitle - 1);
  r.description = "caf\xC3\xA9";  // valid UTF-8 is kept as it is
  RecordUpsert u = store->open_or_touch(r, kT0);
  EXPECT_EQ(u.record.title,
            "bad \xEF\xBF\xBD( byte, a NUL \xEF\xBF\xBD here, and \xE2\x82\xAC fine");
  EXPECT_EQ(u.record.description, "caf\xC3\xA9");
  OutboxMessage m = a_message("slack", "k\xFF", kT0);
  ASSERT_TRUE(store->enqueue(m));
  EXPECT_EQ(store->outbox(std::nullopt, 10)[0].dedup_key, "k\xEF\xBF\xBD");
}

TEST_F(PgStoreTest, UnknownStoredNamesReadBackAsDefaults) {
  std::int64_t id = 0;
  {
    auto store = open_store();
    ASSERT_NE(store, nullptr);
    id = store->open_or_touch(a_full_record(), kT0).record.id;
    OutboxMessage m = a_message("slack", "k", kT0);
    ASSERT_TRUE(store->enqueue(m));
  }
  exec(
      "UPDATE records SET kind = 'spaceship', level = 'apocalyptic', status = '',"
      " error_type = 'gremlins', tier = 99999999999 WHERE id = " +
      std::to_string(id));
  exec("UPDATE outbox SET state = 'lost'");
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
  EXPECT_EQ(r->agent, "deployer");
  EXPECT_EQ(store->outbox(std::nullopt, 10).at(0).state, OutboxState::pending);
}

// --- The pool ----------------------------------------------------------------------------------

TEST_F(PgStoreTest, ThePoolStaysBoundedAndATransactionKeepsItsConnection) {
  auto store = open_store({.pool_size = 2});
  ASSERT_NE(store, nullptr);
  std::vector<std::thread> threads;
  std::atomic<std::size_t> most{0};
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 30; ++i) {
        store->transaction([&] {
          store->open_or_touch(a_record("fp" + std::to_string(t)), kT0);
          store->records({.limit = 1});  // the same connection: nested calls do not borrow
          std::size_t open = store->open_connections();
          std::size_t seen = most.load();
          while (open > seen && !most.compare_exchange_weak(seen, open)) {
          }
        });
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_LE(most.load(), 2u);
  EXPECT_LE(store->open_connections(), 2u);
  EXPECT_EQ(store->records({}).size(), 6u);
  for (const EscalationRecord& r : store->records({})) EXPECT_EQ(r.occurrences, 30);
}

TEST_F(PgStoreTest, NoFreeConnectionInTimeIsATransientError) {
  auto store = open_store({.pool_size = 1, .acquire_timeout = milliseconds(50)});
  ASSERT_NE(store, nullptr);
  store->transaction([&] {
    std::thread other([&] {
      try {
        store->records({});
        ADD_FAILURE() << "a second connection was opened";
      } catch (const Exception& e) {
        EXPECT_TRUE(PgStore::is_transient(e.error())) << e.error().describe();
      }
    });
    other.join();
  });
}

// --- Cluster -----------------------------------------------------------------------------------

// Two nodes (two stores, each its own pool, on one database) report the same failure 500 times
// each at once: one active record, with every occurrence counted.
TEST_F(PgStoreTest, TwoNodesReportingOneFingerprintMakeOneRecordWithEveryOccurrence) {
  auto node_a = open_store();
  auto node_b = open_store();
  ASSERT_NE(node_a, nullptr);
  ASSERT_NE(node_b, nullptr);
  constexpr int kPerNode = 500;
  std::atomic<int> created{0};
  std::atomic<bool> go{false};
  auto report = [&](PgStore* node) {
    while (!go.load()) std::this_thread::yield();
    for (int i = 0; i < kPerNode; ++i) {
      if (node->open_or_touch(a_record("fp"), kT0 + milliseconds(i)).created) ++created;
    }
  };
  std::thread a(report, node_a.get());
  std::thread b(report, node_b.get());
  go = true;
  a.join();
  b.join();
  EXPECT_EQ(created.load(), 1);
  EXPECT_EQ(query_int("SELECT count(*) FROM records WHERE fingerprint = 'fp'"
                      " AND status IN ('open', 'acknowledged')"),
            1);
  std::vector<EscalationRecord> records = node_b->records({});
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].occurrences, 2 * kPerNode);
  EXPECT_TRUE(records[0].last_seen_at == kT0 + milliseconds(kPerNode - 1));
  // "opened", occurrences 2..10, 100 and 1000: each milestone once, whichever node reached it.
  EXPECT_EQ(node_a->timeline(records[0].id).size(), 12u);
}

// The same race at its sharpest: both nodes insert the first occurrence at the same moment, many
// times over (one fingerprint per round), and each round makes one record.
TEST_F(PgStoreTest, TwoNodesOpeningOneRecordAtTheSameMomentMakeOne) {
  auto node_a = open_store();
  auto node_b = open_store();
  ASSERT_NE(node_a, nullptr);
  ASSERT_NE(node_b, nullptr);
  constexpr int kRounds = 100;
  std::atomic<int> created{0};
  std::atomic<int> ready{0};
  auto report = [&](PgStore* node) {
    for (int round = 0; round < kRounds; ++round) {
      // Both threads start a round together.
      ready.fetch_add(1);
      while (ready.load() < 2 * (round + 1)) std::this_thread::yield();
      if (node->open_or_touch(a_record("fp-" + std::to_string(round)), kT0).created) ++created;
    }
  };
  std::thread a(report, node_a.get());
  std::thread b(report, node_b.get());
  a.join();
  b.join();
  EXPECT_EQ(created.load(), kRounds);
  EXPECT_EQ(query_int("SELECT count(*) FROM records"), kRounds);
  EXPECT_EQ(query_int("SELECT count(*) FROM records WHERE occurrences <> 2"), 0);
}

}  // namespace
}  // namespace mend
