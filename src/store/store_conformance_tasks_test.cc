// Every store's tasks and their journal: accepted tasks and their progress across a
// reopen, finished outcomes, refused duplicates, the task counter, loading and pruning.
#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "store_conformance_test_support.h"

namespace mend {
namespace {

using std::chrono::minutes;
using std::chrono::seconds;
using store_test_support::accept;
using store_test_support::kT0;
using store_test_support::running_task;
using store_test_support::StoreTest;

using StoreTasksTest = StoreTest;
INSTANTIATE_TEST_SUITE_P(Stores, StoreTasksTest, store_test_support::kEveryStore,
                         store_test_support::store_name);

// --- Journal -----------------------------------------------------------------------------------

TEST_P(StoreTasksTest, JournalListsNewestFirst) {
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

TEST_P(StoreTasksTest, AnAcceptedTaskAndItsProgressSurviveAReopen) {
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

TEST_P(StoreTasksTest, AFinishedTaskKeepsItsOutcomeAndDropsItsRequest) {
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

TEST_P(StoreTasksTest, AStoredIdOrIdempotencyKeyRefusesOnlyItsOwnAccept) {
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

TEST_P(StoreTasksTest, TheTaskCounterOnlyRises) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->next_task_number(), 1);
  store->write_tasks({}, 40);
  store->write_tasks({}, 7);
  EXPECT_EQ(store->next_task_number(), 40);
}

TEST_P(StoreTasksTest, LoadKeepsEveryRunningTaskAndTheNewestFinishedOnesAndPruneDropsTheRest) {
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

}  // namespace
}  // namespace mend
