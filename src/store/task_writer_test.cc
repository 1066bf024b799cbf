// TaskWriter against a real SQLite file on a manual clock: writes land in order and in batches,
// refused accepts are told apart, and while the store fails (another program holds its write
// lock) accepts fail at once, progress and finish writes wait in memory in order and are written
// with backoff once the store takes them again, with the health callback at both ends.
#include "mend/store/task_writer.h"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "mend/core/system_clock.h"
#include "mend/store/sqlite_store.h"
#include "mend_test/temp_dir.h"
#include "mend_test/write_lock_holder.h"

namespace mend {
namespace {

using namespace std::chrono_literals;

StoredTask running(const std::string& id, const std::string& key = "") {
  StoredTask t;
  t.id = id;
  t.idempotency_key = key;
  t.type = "deployment";
  t.agent = "deployer";
  t.request_json = R"({"type":"deployment"})";
  t.submitted_at = WallTime(std::chrono::seconds(1'800'000'000));
  return t;
}

TaskWrite accept(const std::string& id, const std::string& key = "") {
  return {TaskWrite::Kind::accept, running(id, key), std::nullopt};
}

TaskWrite progress(const std::string& id, bool call_in_flight, int attempts) {
  TaskWrite w{TaskWrite::Kind::progress, running(id), std::nullopt};
  w.task.call_in_flight = call_in_flight;
  w.task.attempts = attempts;
  return w;
}

TaskWrite finish(const std::string& id, const std::string& status) {
  TaskWrite w{TaskWrite::Kind::finish, running(id), std::nullopt};
  w.task.done = true;
  w.task.status = status;
  w.task.outcome_json = R"({"status":")" + status + "\"}";
  w.task.finished_at = w.task.submitted_at + std::chrono::seconds(3);
  JournalEntry entry;
  entry.task_id = id;
  entry.status = status;
  entry.finished_at = *w.task.finished_at;
  w.journal = entry;
  return w;
}

using mend::testing::WriteLockHolder;

class TaskWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = mend::testing::open_store_that_fails_fast(temp_.file("mend.db"));
    ASSERT_NE(store_, nullptr);
    options_.own_thread = false;
    options_.retry_initial = 100ms;
    options_.retry_max = 400ms;
    options_.on_health_change = [this](bool failing, const std::string& error) {
      health_changes_.push_back(failing ? "failing: " + error : "recovered");
    };
  }

  TaskWriter::Done remember(const std::string& name) {
    return [this, name](TaskWriter::Result r, const std::string&) {
      const char* text = r == TaskWriter::Result::written   ? "written"
                         : r == TaskWriter::Result::refused ? "refused"
                                                            : "failed";
      results_.push_back(name + " " + text);
    };
  }

  mend::testing::TempDir temp_{"mend-task-writer"};
  std::unique_ptr<SqliteStore> store_;
  ManualClock clock_;
  TaskWriter::Options options_;
  std::vector<std::string> results_;
  std::vector<std::string> health_changes_;
};

TEST_F(TaskWriterTest, WritesLandInOneTransactionInOrderAndRefusedAcceptsAreToldApart) {
  TaskWriter writer(*store_, clock_, options_);
  writer.raise_task_number(8);
  ASSERT_TRUE(writer.submit(accept("task-7", "key-1"), remember("accept 7")));
  ASSERT_TRUE(writer.submit(accept("task-7"), remember("same id")));
  ASSERT_TRUE(writer.submit(accept("other", "key-1"), remember("same key")));
  ASSERT_TRUE(writer.submit(progress("task-7", false, 2), remember("progress")));
  ASSERT_TRUE(writer.submit(finish("task-7", "fallback"), remember("finish")));
  EXPECT_TRUE(results_.empty()) << "nothing is written before run_once()";

  EXPECT_EQ(writer.run_once(), 5u);
  EXPECT_EQ(results_,
            (std::vector<std::string>{"accept 7 written", "same id refused", "same key refused",
                                      "progress written", "finish written"}));
  std::optional<StoredTask> stored = store_->stored_task("task-7");
  ASSERT_TRUE(stored);
  EXPECT_TRUE(stored->done);
  EXPECT_EQ(stored->status, "fallback");
  EXPECT_EQ(stored->attempts, 0) << "finish wrote its own attempts";
  EXPECT_FALSE(store_->stored_task("other"));
  ASSERT_EQ(store_->journal(10).size(), 1u) << "the journal entry rides with the finish";
  EXPECT_EQ(store_->next_task_number(), 8);
  TaskWriter::Health h = writer.health();
  EXPECT_EQ(h.written, 5);
  EXPECT_EQ(h.batches, 1);
  EXPECT_FALSE(h.failing);
  EXPECT_TRUE(health_changes_.empty());
}

TEST_F(TaskWriterTest, WhileTheStoreFailsAcceptsFailAndProgressWaitsInOrderUntilItIsWritten) {
  TaskWriter writer(*store_, clock_, options_);
  ASSERT_TRUE(writer.submit(accept("task-1"), remember("accept 1")));
  writer.run_once();

  auto lock = std::make_unique<WriteLockHolder>(temp_.file("mend.db"));
  ASSERT_TRUE(writer.submit(progress("task-1", false, 1), remember("waiting")));
  ASSERT_TRUE(writer.submit(accept("task-2"), remember("accept 2")));
  writer.run_once();
  EXPECT_EQ(results_,
            (std::vector<std::string>{"accept 1 written", "waiting failed", "accept 2 failed"}));
  ASSERT_EQ(health_changes_.size(), 1u);
  EXPECT_NE(health_changes_[0].find("failing: "), std::string::npos);
  TaskWriter::Health h = writer.health();
  EXPECT_TRUE(h.failing);
  EXPECT_EQ(h.retry_pending, 1u) << "the accept is not kept: its client was refused";
  // One try failed; the accept after it was not tried (the store itself fails, and each try
  // could wait its whole busy timeout) and failed with it.
  EXPECT_EQ(h.failed_tries, 1);
  EXPECT_FALSE(h.last_error.empty());

  // A later change of the same task queues behind the failed one, untried, and its submitter
  // hears at once that it is not in the store.
  ASSERT_TRUE(writer.submit(progress("task-1", true, 1), remember("calling")));
  ASSERT_TRUE(writer.submit(finish("task-1", "succeeded"), remember("finish")));
  writer.run_once();
  EXPECT_EQ(results_.size(), 5u);
  // Each change of a task replaces its progress still waiting: one write is left, the finish.
  EXPECT_EQ(writer.health().retry_pending, 1u);
  EXPECT_EQ(writer.health().failed_tries, 1) << "nothing is tried before the retry is due";

  // Due after 100 ms; still locked: tried again, and the next try waits twice as long.
  clock_.advance(100ms);
  writer.run_once();
  EXPECT_EQ(writer.health().failed_tries, 2);
  clock_.advance(100ms);
  writer.run_once();
  EXPECT_EQ(writer.health().failed_tries, 2) << "the second retry waits 200 ms";

  lock->release();
  clock_.advance(100ms);
  EXPECT_EQ(writer.run_once(), 1u);
  h = writer.health();
  EXPECT_FALSE(h.failing);
  EXPECT_EQ(h.retry_pending, 0u);
  EXPECT_EQ(health_changes_.back(), "recovered");
  // Each submitter heard once, of the first failure: nothing more when the retry succeeds.
  EXPECT_EQ(results_,
            (std::vector<std::string>{"accept 1 written", "waiting failed", "accept 2 failed",
                                      "calling failed", "finish failed"}));
  std::optional<StoredTask> stored = store_->stored_task("task-1");
  ASSERT_TRUE(stored);
  EXPECT_TRUE(stored->done);
  EXPECT_EQ(stored->status, "succeeded");
  EXPECT_FALSE(store_->stored_task("task-2"));
}

TEST_F(TaskWriterTest, RetriedWritesAreBoundedAndTheOldestAreDroppedAndCounted) {
  options_.max_retried = 2;
  TaskWriter writer(*store_, clock_, options_);
  ASSERT_TRUE(writer.submit(accept("task-1"), {}));
  writer.run_once();
  WriteLockHolder lock(temp_.file("mend.db"));
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(writer.submit(progress("task-" + std::to_string(i), i % 2 == 0, i), {}));
  }
  writer.run_once();
  TaskWriter::Health h = writer.health();
  EXPECT_EQ(h.retry_pending, 2u);
  EXPECT_EQ(h.dropped, 3);
}

// Only accepts failed, so nothing waits for a retry: an empty transaction, tried with the same
// backoff, notices when the store takes writes again (else "failing" would last until the next
// task, which a load balancer that reads /readyz would never send).
TEST_F(TaskWriterTest, AFailingStoreWithNothingToRetryIsProbedUntilItRecovers) {
  TaskWriter writer(*store_, clock_, options_);
  auto lock = std::make_unique<WriteLockHolder>(temp_.file("mend.db"));
  ASSERT_TRUE(writer.submit(accept("task-1"), remember("accept")));
  writer.run_once();
  EXPECT_TRUE(writer.health().failing);
  EXPECT_EQ(writer.health().retry_pending, 0u);
  clock_.advance(100ms);
  writer.run_once();  // the probe fails: still locked
  EXPECT_EQ(writer.health().failed_tries, 2);
  EXPECT_TRUE(writer.health().failing);
  lock->release();
  clock_.advance(200ms);
  writer.run_once();
  EXPECT_FALSE(writer.health().failing);
  EXPECT_EQ(health_changes_.back(), "recovered");
}

TEST_F(TaskWriterTest, AcceptsBeyondTheQueueBoundAreRefusedButATasksOwnChangesAreNot) {
  options_.max_queued = 2;
  TaskWriter writer(*store_, clock_, options_);
  EXPECT_TRUE(writer.submit(accept("a"), {}));
  EXPECT_TRUE(writer.submit(accept("b"), {}));
  EXPECT_FALSE(writer.submit(accept("c"), remember("c")));
  EXPECT_TRUE(writer.submit(progress("a", false, 1), {}));
  writer.flush();
  EXPECT_TRUE(results_.empty()) << "a refused submission is not called back";
  EXPECT_TRUE(store_->stored_task("a"));
  EXPECT_FALSE(store_->stored_task("c"));
}

TEST_F(TaskWriterTest, TheDestructorWritesWhatIsStillQueued) {
  {
    TaskWriter writer(*store_, clock_, options_);
    ASSERT_TRUE(writer.submit(accept("task-1"), {}));
    ASSERT_TRUE(writer.submit(finish("task-1", "degraded"), {}));
  }
  std::optional<StoredTask> stored = store_->stored_task("task-1");
  ASSERT_TRUE(stored);
  EXPECT_EQ(stored->status, "degraded");
}

// stop() counts after its last tries: what a store that came back took is not reported lost,
// and what a store still locked refused is.
TEST_F(TaskWriterTest, StopReportsWhatIsLeftAfterItsLastTries) {
  {
    TaskWriter writer(*store_, clock_, options_);
    ASSERT_TRUE(writer.submit(accept("task-1"), {}));
    writer.run_once();
    auto lock = std::make_unique<WriteLockHolder>(temp_.file("mend.db"));
    ASSERT_TRUE(writer.submit(finish("task-1", "succeeded"), {}));
    writer.run_once();
    EXPECT_EQ(writer.health().retry_pending, 1u);
    lock->release();
    TaskWriter::Health last = writer.stop();
    EXPECT_EQ(last.retry_pending, 0u);
    EXPECT_EQ(last.queued, 0u);
    EXPECT_EQ(store_->stored_task("task-1")->status, "succeeded");
    EXPECT_EQ(writer.stop().written, last.written) << "a second stop() changes nothing";
  }
  TaskWriter writer(*store_, clock_, options_);
  ASSERT_TRUE(writer.submit(accept("task-2"), {}));
  writer.run_once();
  WriteLockHolder lock(temp_.file("mend.db"));
  ASSERT_TRUE(writer.submit(finish("task-2", "succeeded"), {}));
  TaskWriter::Health last = writer.stop();
  EXPECT_EQ(last.retry_pending + last.queued, 1u);
  EXPECT_FALSE(last.last_error.empty());
}

TEST(TaskWriterThreadTest, ItsOwnThreadWritesAndFlushWaitsForIt) {
  mend::testing::TempDir temp("mend-task-writer");
  auto opened = SqliteStore::open(temp.file("mend.db"));
  ASSERT_TRUE(opened.ok());
  TaskWriter writer(**opened, SystemClock::instance());
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(writer.submit(accept("task-" + std::to_string(i)), {}));
  }
  writer.flush();
  EXPECT_EQ((*opened)->load_tasks(0).size(), 200u);
  EXPECT_EQ(writer.health().written, 200);
  EXPECT_LE(writer.health().batches, 200);
}

}  // namespace
}  // namespace mend
