// The task registry's decisions on a manual clock: admission, ids, Idempotency-Keys, waiters,
// the store's progress writes, retention and the drain. No sockets, no sleeps.
#include "task_registry.h"

#include <gtest/gtest.h>

#include "mend/core/clock.h"
#include "recording_responder.h"

namespace mend::server_detail {
namespace {

using namespace std::chrono_literals;

Task task_of(const std::string& type, const std::string& id = "") {
  Task t;
  t.id = id;
  t.type = type;
  t.agent = "worker";
  return t;
}

struct Fixture : ::testing::Test {
  ManualClock clock;
  TaskRegistry tasks{clock, {.max_in_flight = 3, .retained = 2}};

  // Admits a task of `type` and marks it stored; returns its id.
  std::string admit_stored(const std::string& type, const std::string& key = "",
                           const std::string& digest = "d") {
    Task t = task_of(type);
    TaskRegistry::Admission a = tasks.admit(t, key, digest, false);
    EXPECT_EQ(a.result, TaskRegistry::Admit::accepted);
    tasks.mark_stored(a.id, nullptr);
    return a.id;
  }
  // A waiter whose timer is a flag: cancel() sets it.
  std::function<TaskWaiter(bool, const TaskView&)> waiter(
      std::shared_ptr<RecordingResponder> client, std::shared_ptr<bool> cancelled,
      bool* until_stored) {
    return [client, cancelled, until_stored](bool until, const TaskView&) {
      *until_stored = until;
      return TaskWaiter{client, [cancelled] { *cancelled = true; }, until, false};
    };
  }
};

using TaskRegistryTest = Fixture;

TEST_F(TaskRegistryTest, GeneratedIdsCountUpAndSkipIdsClientsChose) {
  Task chosen = task_of("review", "task-2");
  ASSERT_EQ(tasks.admit(chosen, "", "a", false).result, TaskRegistry::Admit::accepted);
  Task first = task_of("review");
  TaskRegistry::Admission a = tasks.admit(first, "", "b", false);
  EXPECT_EQ(a.id, "task-1");
  EXPECT_EQ(first.id, "task-1");
  EXPECT_EQ(a.next_task_number, 2u);
  Task second = task_of("review");
  TaskRegistry::Admission b = tasks.admit(second, "", "c", false);
  EXPECT_EQ(b.id, "task-3");  // task-2 is the client's
  EXPECT_EQ(b.next_task_number, 4u);
}

TEST_F(TaskRegistryTest, AClientsIdThatIsTakenIsRefused) {
  Task t = task_of("review", "mine");
  ASSERT_EQ(tasks.admit(t, "", "a", false).result, TaskRegistry::Admit::accepted);
  Task again = task_of("review", "mine");
  TaskRegistry::Admission a = tasks.admit(again, "", "a", false);
  EXPECT_EQ(a.result, TaskRegistry::Admit::id_taken);
  EXPECT_EQ(tasks.in_flight(), 1u);
}

TEST_F(TaskRegistryTest, AnIdempotencyKeyReplaysTheSameBodyAndRefusesAnother) {
  const std::string id = admit_stored("deploy", "key-1", "digest-1");
  Task same = task_of("deploy");
  TaskRegistry::Admission replay = tasks.admit(same, "key-1", "digest-1", false);
  EXPECT_EQ(replay.result, TaskRegistry::Admit::replay);
  EXPECT_EQ(replay.id, id);
  Task other = task_of("deploy");
  TaskRegistry::Admission conflict = tasks.admit(other, "key-1", "digest-2", false);
  EXPECT_EQ(conflict.result, TaskRegistry::Admit::key_conflict);
  EXPECT_EQ(conflict.id, id);
  EXPECT_EQ(tasks.in_flight(), 1u);  // neither counts again
}

TEST_F(TaskRegistryTest, AdmissionStopsAtTheLimitAndAfterStopAdmitting) {
  for (int i = 0; i < 3; ++i) admit_stored("review");
  Task fourth = task_of("review");
  EXPECT_EQ(tasks.admit(fourth, "", "d", false).result, TaskRegistry::Admit::full);
  EXPECT_TRUE(fourth.id.empty());  // no id spent on a refusal

  tasks.finish("task-1", "succeeded", "{}", true);
  tasks.release();
  Task fifth = task_of("review");
  EXPECT_EQ(tasks.admit(fifth, "", "e", false).result, TaskRegistry::Admit::accepted);

  tasks.stop_admitting();
  Task late = task_of("review");
  EXPECT_EQ(tasks.admit(late, "", "f", false).result, TaskRegistry::Admit::stopping);
}

TEST_F(TaskRegistryTest, AClientThatDoesNotWaitForAnUnstoredTaskWaitsUntilItIsStored) {
  Task t = task_of("review");
  TaskRegistry::Admission a = tasks.admit(t, "k", "d", false);
  auto client = std::make_shared<RecordingResponder>();
  auto cancelled = std::make_shared<bool>(false);
  bool until_stored = false;
  TaskRegistry::Lookup l = tasks.wait(a.id, false, false, waiter(client, cancelled, &until_stored));
  EXPECT_EQ(l.kind, TaskRegistry::Lookup::Kind::waiting);
  EXPECT_TRUE(until_stored);

  TaskView view;
  std::vector<TaskWaiter> told = tasks.mark_stored(a.id, &view);
  ASSERT_EQ(told.size(), 1u);
  EXPECT_EQ(told[0].responder, client);
  EXPECT_EQ(view.id, a.id);
  EXPECT_FALSE(view.done);

  // Stored now: the same question is answered at once.
  TaskRegistry::Lookup now =
      tasks.wait(a.id, false, false, waiter(client, cancelled, &until_stored));
  EXPECT_EQ(now.kind, TaskRegistry::Lookup::Kind::answer_now);
}

TEST_F(TaskRegistryTest, AnUnstoredTaskIsForgottenWithItsKeyAndItsWaiters) {
  Task t = task_of("review");
  TaskRegistry::Admission a = tasks.admit(t, "k", "d", false);
  auto client = std::make_shared<RecordingResponder>();
  auto cancelled = std::make_shared<bool>(false);
  bool until_stored = false;
  tasks.wait(a.id, false, false, waiter(client, cancelled, &until_stored));
  std::vector<TaskWaiter> waiters = tasks.forget_unstored(a.id);
  EXPECT_EQ(waiters.size(), 1u);
  EXPECT_EQ(tasks.in_flight(), 0u);
  EXPECT_EQ(tasks.wait(a.id, false, false, waiter(client, cancelled, &until_stored)).kind,
            TaskRegistry::Lookup::Kind::unknown);
  // The key is free again: the same key starts a new task.
  Task again = task_of("review");
  EXPECT_EQ(tasks.admit(again, "k", "other", false).result, TaskRegistry::Admit::accepted);
  // A stored task is not forgotten.
  tasks.mark_stored(again.id, nullptr);
  EXPECT_TRUE(tasks.forget_unstored(again.id).empty());
  EXPECT_EQ(tasks.in_flight(), 1u);
}

TEST_F(TaskRegistryTest, WaitersHearTheWholeOutcomeAndTheRunTimeComesFromTheClock) {
  const std::string id = admit_stored("review");
  auto client = std::make_shared<RecordingResponder>();
  auto cancelled = std::make_shared<bool>(false);
  bool until_stored = true;
  TaskRegistry::Lookup l = tasks.wait(id, true, false, waiter(client, cancelled, &until_stored));
  EXPECT_EQ(l.kind, TaskRegistry::Lookup::Kind::waiting);
  EXPECT_FALSE(until_stored);

  clock.advance(1500ms);
  const std::string large(kInlineOutcomeBytes + 1, 'x');
  TaskRegistry::Finished f = tasks.finish(id, "succeeded", large, /*outcome_stored=*/true);
  ASSERT_TRUE(f.ran_for);
  EXPECT_EQ(*f.ran_for, 1500ms);
  ASSERT_EQ(f.waiters.size(), 1u);
  EXPECT_EQ(f.view.outcome_json, large);
  EXPECT_TRUE(f.view.done);
  EXPECT_EQ(tasks.in_flight(), 1u);  // until its waiters were answered
  tasks.release();
  EXPECT_EQ(tasks.in_flight(), 0u);

  // Retained: a summary, the large outcome left to the store.
  TaskRegistry::Lookup later =
      tasks.wait(id, true, false, waiter(client, cancelled, &until_stored));
  ASSERT_EQ(later.kind, TaskRegistry::Lookup::Kind::answer_now);
  EXPECT_TRUE(later.view.outcome_in_store);
  EXPECT_TRUE(later.view.outcome_json.empty());
  EXPECT_EQ(later.view.status, "succeeded");
}

TEST_F(TaskRegistryTest, AnOutcomeTheStoreDidNotTakeStaysInMemoryHoweverLarge) {
  const std::string id = admit_stored("review");
  const std::string large(kInlineOutcomeBytes + 1, 'x');
  tasks.finish(id, "failed", large, /*outcome_stored=*/false);
  tasks.release();
  auto client = std::make_shared<RecordingResponder>();
  bool until_stored = false;
  TaskRegistry::Lookup l =
      tasks.wait(id, false, false, waiter(client, std::make_shared<bool>(), &until_stored));
  EXPECT_FALSE(l.view.outcome_in_store);
  EXPECT_EQ(l.view.outcome_json, large);
}

TEST_F(TaskRegistryTest, OnlyTheNewestFinishedTasksAreRetainedAndTheirKeysGoWithThem) {
  const std::string a = admit_stored("review", "ka");
  const std::string b = admit_stored("review", "kb");
  const std::string c = admit_stored("review", "kc");
  for (const std::string& id : {a, b, c}) {
    tasks.finish(id, "succeeded", "{}", true);
    tasks.release();
  }
  std::vector<TaskListing> left = tasks.list();
  ASSERT_EQ(left.size(), 2u);  // retained: 2
  EXPECT_EQ(left[0].id, b);
  EXPECT_EQ(left[1].id, c);
  // The oldest one's key is free: a new task, not a replay.
  Task again = task_of("review");
  EXPECT_EQ(tasks.admit(again, "ka", "d", false).result, TaskRegistry::Admit::accepted);
  Task replay = task_of("review");
  EXPECT_EQ(tasks.admit(replay, "kb", "d", false).result, TaskRegistry::Admit::replay);
}

TEST_F(TaskRegistryTest, AWaitersTimeoutAnswersRunningWithWhenTheTaskWasSubmitted) {
  const WallTime submitted = clock.wall_now();
  const std::string id = admit_stored("review");
  clock.advance(3s);
  TaskView told;
  auto client = std::make_shared<RecordingResponder>();
  TaskRegistry::Lookup l = tasks.wait(id, true, false, [&](bool, const TaskView& running) {
    told = running;
    return TaskWaiter{client, [] {}, false, false};
  });
  EXPECT_EQ(l.kind, TaskRegistry::Lookup::Kind::waiting);
  EXPECT_EQ(told.id, id);
  EXPECT_FALSE(told.done);
  EXPECT_EQ(told.submitted_at, submitted);
}

TEST_F(TaskRegistryTest, ATimedOutWaiterIsRemovedAndNotAnsweredAgain) {
  const std::string id = admit_stored("review");
  auto client = std::make_shared<RecordingResponder>();
  bool until_stored = false;
  tasks.wait(id, true, false, waiter(client, std::make_shared<bool>(), &until_stored));
  tasks.remove_waiter(id, client);
  EXPECT_TRUE(tasks.finish(id, "succeeded", "{}", true).waiters.empty());
}

TEST_F(TaskRegistryTest, WhileStoppingAStoredRunningTaskIsAnsweredAtOnce) {
  const std::string id = admit_stored("review");
  auto client = std::make_shared<RecordingResponder>();
  bool until_stored = false;
  TaskRegistry::Lookup l = tasks.wait(id, true, /*stopping=*/true,
                                      waiter(client, std::make_shared<bool>(), &until_stored));
  EXPECT_EQ(l.kind, TaskRegistry::Lookup::Kind::answer_now);
  EXPECT_FALSE(l.view.done);
}

TEST_F(TaskRegistryTest, TheStoreHearsOfCallsOnlyWhenItsViewChanges) {
  Task t = task_of("deploy");
  TaskRegistry::Admission a = tasks.admit(t, "", "d", /*idempotent=*/false);
  // Not stored yet: a backoff is not written.
  EXPECT_FALSE(tasks.backoff_began(a.id));
  tasks.mark_stored(a.id, nullptr);
  // Accepted as "calling": the first call changes nothing the store says, but counts.
  EXPECT_FALSE(tasks.call_starting(a.id));
  std::optional<TaskRegistry::Progress> waiting = tasks.backoff_began(a.id);
  ASSERT_TRUE(waiting);
  EXPECT_FALSE(waiting->call_in_flight);
  EXPECT_EQ(waiting->attempts, 1);
  std::optional<TaskRegistry::Progress> calling = tasks.call_starting(a.id);
  ASSERT_TRUE(calling);
  EXPECT_TRUE(calling->call_in_flight);
  EXPECT_EQ(calling->attempts, 2);
  EXPECT_TRUE(calling->must_be_stored);  // not idempotent: stored before the call goes out

  Task idem = task_of("review");
  TaskRegistry::Admission b = tasks.admit(idem, "", "e", /*idempotent=*/true);
  tasks.mark_stored(b.id, nullptr);
  tasks.backoff_began(b.id);
  std::optional<TaskRegistry::Progress> idem_call = tasks.call_starting(b.id);
  ASSERT_TRUE(idem_call);
  EXPECT_FALSE(idem_call->must_be_stored);

  auto running = tasks.running(a.id);
  ASSERT_TRUE(running);
  EXPECT_EQ(running->first.type, "deploy");
  EXPECT_EQ(running->second, 2);
  tasks.finish(a.id, "succeeded", "{}", true);
  EXPECT_FALSE(tasks.call_starting(a.id));  // done: nothing more to write
  EXPECT_FALSE(tasks.backoff_began(a.id));
}

TEST_F(TaskRegistryTest, RestoredTasksKeepTheirKeysAndTheCounterNeverGoesBack) {
  TaskEntry finished;
  finished.task.id = "task-7";
  finished.idempotency_key = "old-key";
  finished.request_digest = "d";
  finished.done = true;
  finished.status = "succeeded";
  tasks.restore(std::move(finished), 8);
  TaskEntry running;
  running.task.id = "task-8";
  running.status = "running";
  tasks.restore(std::move(running), 9);
  EXPECT_EQ(tasks.in_flight(), 1u);
  Task replay = task_of("review");
  EXPECT_EQ(tasks.admit(replay, "old-key", "d", false).result, TaskRegistry::Admit::replay);
  Task next = task_of("review");
  EXPECT_EQ(tasks.admit(next, "", "x", false).id, "task-9");
  clock.advance(2s);
  TaskRegistry::Finished f = tasks.finish("task-8", "succeeded", "{}", true);
  ASSERT_TRUE(f.ran_for);
  EXPECT_EQ(*f.ran_for, 2s);  // from the restart, on the clock it was given
}

TEST_F(TaskRegistryTest, TheDrainReportsWhatIsStillInFlight) {
  admit_stored("review");
  EXPECT_EQ(tasks.wait_drained(0ms), 1u);
  tasks.finish("task-1", "succeeded", "{}", true);
  EXPECT_EQ(tasks.wait_drained(0ms), 1u);  // its waiters are still being answered
  tasks.release();
  EXPECT_EQ(tasks.wait_drained(0ms), 0u);
}

}  // namespace
}  // namespace mend::server_detail
