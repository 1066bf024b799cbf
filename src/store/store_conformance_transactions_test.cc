// Every store's transactions and concurrent writers: one record from many threads or
// stores, rollback on an exception, nesting, and a transaction holding other threads off.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "store_conformance_test_support.h"

namespace mend {
namespace {

using std::chrono::milliseconds;
using store_test_support::a_message;
using store_test_support::a_record;
using store_test_support::ids_of;
using store_test_support::kT0;
using store_test_support::StoreTest;

using StoreTransactionsTest = StoreTest;
INSTANTIATE_TEST_SUITE_P(Stores, StoreTransactionsTest, store_test_support::kEveryStore,
                         store_test_support::store_name);

// --- Concurrency -------------------------------------------------------------------------------

TEST_P(StoreTransactionsTest, ThreadsReportingOneFingerprintMakeOneRecord) {
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

TEST_P(StoreTransactionsTest, TwoStoresOnOneFileMakeOneRecordToo) {
  auto first = open_store();
  auto second = open_store();
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  constexpr int kPerThread = 50;
  std::vector<std::thread> threads;
  for (Store* store : {first.get(), second.get(), first.get(), second.get()}) {
    threads.emplace_back([store] {
      for (int i = 0; i < kPerThread; ++i) store->open_or_touch(a_record("fp"), kT0);
    });
  }
  for (std::thread& t : threads) t.join();
  std::vector<EscalationRecord> records = first->records({});
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].occurrences, 4 * kPerThread);
}

TEST_P(StoreTransactionsTest, ASecondStoreSeesWhatTheFirstCommitted) {
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

TEST_P(StoreTransactionsTest, AnExceptionRollsBackTheWholeTransaction) {
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

TEST_P(StoreTransactionsTest, NestedTransactionsCommitOnceAtTheOutermost) {
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

TEST_P(StoreTransactionsTest, AFailedInnerTransactionRollsBackOnlyItsOwnWrites) {
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

TEST_P(StoreTransactionsTest, ATransactionHoldsOtherThreadsOffUntilItCommits) {
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

}  // namespace
}  // namespace mend
