// BatchingTaskJournal against a real SQLite file: every entry reaches the store, commits are
// batched, the destructor drains the queue, a full queue slows record() down without losing
// entries, and failed writes are counted.
#include "mend/store/journal.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "mend/store/sqlite_store.h"
#include "mend_test/eventually.h"
#include "mend_test/temp_dir.h"

namespace mend {
namespace {

using mend::testing::eventually;

Task task_numbered(int n) {
  Task task;
  task.id = "task-" + std::to_string(n);
  task.type = "code_review";
  task.agent = "reviewer";
  return task;
}

Outcome answered(const Task& task) {
  Outcome outcome;
  outcome.task_id = task.id;
  outcome.task_type = task.type;
  outcome.primary_agent = task.agent;
  outcome.status = OutcomeStatus::succeeded;
  outcome.answered_by = task.agent;
  outcome.answer = R"({"ok":true})";
  return outcome;
}

void record_numbered(TaskJournal& journal, int n) {
  const Task task = task_numbered(n);
  journal.record(task, answered(task));
}

class BatchingTaskJournalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto opened = SqliteStore::open(temp_.file("mend.db"));
    ASSERT_TRUE(opened.ok()) << opened.error().describe();
    store_ = std::move(*opened);
  }
  std::set<std::string> journal_ids() {
    std::set<std::string> ids;
    for (const JournalEntry& e : store_->journal(100000)) ids.insert(e.task_id);
    return ids;
  }

  mend::testing::TempDir temp_{"mend-journal"};
  ManualClock clock_;
  std::unique_ptr<SqliteStore> store_;
};

TEST_F(BatchingTaskJournalTest, TryRecordQueuesWhileThereIsRoomAndRefusesWhenFull) {
  StoreTaskJournal direct(*store_, clock_);
  const Task task = task_numbered(0);
  EXPECT_FALSE(direct.try_record(task, answered(task)));  // it writes: never without blocking

  BatchingTaskJournal journal(*store_, clock_, {.max_batch = 1, .max_queued = 2});
  int queued = 0;
  store_->transaction([&] {
    // The writer holds at most one entry (waiting for the store) and the queue two more.
    for (int i = 0; i < 10; ++i) {
      const Task t = task_numbered(i);
      if (journal.try_record(t, answered(t))) ++queued;
    }
  });
  EXPECT_GE(queued, 2);
  EXPECT_LE(queued, 3);
  journal.flush();
  EXPECT_EQ(journal.written(), queued);
  EXPECT_EQ(journal.failures(), 0);
  EXPECT_EQ(journal_ids().size(), static_cast<std::size_t>(queued));
}

TEST_F(BatchingTaskJournalTest, EveryEntryFromManyThreadsReachesTheStoreOnce) {
  BatchingTaskJournal journal(*store_, clock_);
  constexpr int kThreads = 4;
  constexpr int kPerThread = 1000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) record_numbered(journal, t * kPerThread + i);
    });
  }
  for (std::thread& t : threads) t.join();
  journal.flush();

  EXPECT_EQ(journal.written(), kThreads * kPerThread);
  EXPECT_EQ(journal.failures(), 0);
  const std::vector<JournalEntry> entries = store_->journal(100000);
  ASSERT_EQ(entries.size(), static_cast<std::size_t>(kThreads * kPerThread));
  EXPECT_EQ(journal_ids().size(), entries.size());  // none twice
  const JournalEntry& newest = entries.front();
  EXPECT_EQ(newest.status, "succeeded");
  EXPECT_EQ(newest.answered_by, "reviewer");
  EXPECT_NE(newest.outcome_json.find(R"("answer":{"ok":true})"), std::string::npos)
      << newest.outcome_json;
}

TEST_F(BatchingTaskJournalTest, EntriesQueuedWhileTheStoreIsBusyGoInOneTransaction) {
  BatchingTaskJournal journal(*store_, clock_);
  // The test holds the store (its lock, inside a transaction) while it records 500 entries: the
  // writer takes at most the first entries and then waits for the store, so the rest queue up and
  // go in one later batch.
  store_->transaction([&] {
    for (int i = 0; i < 500; ++i) record_numbered(journal, i);
  });
  journal.flush();
  EXPECT_EQ(journal.written(), 500);
  EXPECT_LE(journal.batches(), 2);
  EXPECT_EQ(journal_ids().size(), 500u);
}

TEST_F(BatchingTaskJournalTest, TheDestructorWritesWhatIsStillQueued) {
  {
    BatchingTaskJournal journal(*store_, clock_);
    store_->transaction([&] {
      for (int i = 0; i < 300; ++i) record_numbered(journal, i);
    });
  }  // no flush()
  EXPECT_EQ(journal_ids().size(), 300u);
}

TEST_F(BatchingTaskJournalTest, AFullQueueMakesRecordWaitAndLosesNothing) {
  BatchingTaskJournal journal(*store_, clock_, {.max_batch = 1, .max_queued = 2});
  std::atomic<int> recorded{0};
  std::thread recorder;
  store_->transaction([&] {
    recorder = std::thread([&] {
      for (int i = 0; i < 10; ++i) {
        record_numbered(journal, i);
        recorded.fetch_add(1);
      }
    });
    // While the store is held the writer holds at most one entry and the queue two more: the
    // recorder cannot get past its third entry.
    ASSERT_TRUE(eventually([&] { return recorded.load() >= 2; }));
    EXPECT_LE(recorded.load(), 3);
  });
  recorder.join();
  journal.flush();
  EXPECT_EQ(recorded.load(), 10);
  EXPECT_EQ(journal.written(), 10);
  EXPECT_EQ(journal_ids().size(), 10u);
}

TEST_F(BatchingTaskJournalTest, FailedWritesAreCountedAndFlushStillReturns) {
  // Another program drops the table: every insert fails from then on.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(temp_.file("mend.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "DROP TABLE journal", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);

  BatchingTaskJournal journal(*store_, clock_);
  for (int i = 0; i < 5; ++i) record_numbered(journal, i);
  journal.flush();
  EXPECT_EQ(journal.failures(), 5);  // each one tried again on its own after the batch failed
  EXPECT_EQ(journal.written(), 0);
}

}  // namespace
}  // namespace mend
