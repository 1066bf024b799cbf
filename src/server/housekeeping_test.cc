// The daemon's housekeeping as parts: what is due when, on a manual clock, and what one pass over
// a real SQLite store does (kept escalations written, SLA breaches re-escalated, notifications
// delivered to a JSON-lines file, finished tasks pruned). No sockets, no sleeps.
#include "housekeeping.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>

#include "mend/core/random.h"
#include "mend/store/sqlite_store.h"
#include "mend_test/temp_dir.h"
#include "mend_test/write_lock_holder.h"

namespace mend::server_detail {
namespace {

using namespace std::chrono_literals;
using mend::testing::TempDir;
using mend::testing::WriteLockHolder;
using ::testing::HasSubstr;

HousekeepingIntervals intervals() {
  return {.delivery = 1s, .sla_check = 10s, .heartbeat = 15s, .memory_watch = 1s};
}

TEST(HousekeepingScheduleTest, EveryJobIsDueAtTheFirstLookThenEachOnItsOwnInterval) {
  ManualClock clock;
  HousekeepingSchedule schedule;
  HousekeepingSchedule::Due due = schedule.take_due(clock.now(), intervals(), true, true);
  EXPECT_TRUE(due.deliver);
  EXPECT_TRUE(due.check_slas);
  EXPECT_TRUE(due.heartbeat);
  EXPECT_TRUE(due.watch_memory);

  // Looked at again at once: nothing.
  due = schedule.take_due(clock.now(), intervals(), true, true);
  EXPECT_FALSE(due.store_pass());
  EXPECT_FALSE(due.heartbeat);
  EXPECT_FALSE(due.watch_memory);

  int deliveries = 0, sla_checks = 0, heartbeats = 0, memory_watches = 0;
  for (int tick = 0; tick < 300; ++tick) {  // 30 s in the loop's 100 ms ticks
    clock.advance(100ms);
    due = schedule.take_due(clock.now(), intervals(), true, true);
    deliveries += due.deliver;
    sla_checks += due.check_slas;
    heartbeats += due.heartbeat;
    memory_watches += due.watch_memory;
  }
  EXPECT_EQ(deliveries, 30);
  EXPECT_EQ(sla_checks, 3);
  EXPECT_EQ(heartbeats, 2);
  EXPECT_EQ(memory_watches, 30);
}

TEST(HousekeepingScheduleTest, ABusyJobIsNotDueUntilItIsFreeAndDoesNotQueueUp) {
  ManualClock clock;
  HousekeepingSchedule schedule;
  (void)schedule.take_due(clock.now(), intervals(), true, true);

  // A store pass and a memory watch that take 35 s: neither is due while it runs, and once free
  // each is due once, not once per interval missed.
  for (int tick = 0; tick < 350; ++tick) {
    clock.advance(100ms);
    HousekeepingSchedule::Due due = schedule.take_due(clock.now(), intervals(), false, false);
    EXPECT_FALSE(due.store_pass());
    EXPECT_FALSE(due.watch_memory);
  }
  HousekeepingSchedule::Due due = schedule.take_due(clock.now(), intervals(), true, true);
  EXPECT_TRUE(due.deliver);
  EXPECT_TRUE(due.check_slas);
  EXPECT_TRUE(due.watch_memory);
  // The heartbeat never waits for the others.
  EXPECT_FALSE(due.heartbeat);  // the last was at 30 s, on its own schedule
  due = schedule.take_due(clock.now(), intervals(), true, true);
  EXPECT_FALSE(due.store_pass());
  EXPECT_FALSE(due.watch_memory);
}

TEST(HousekeepingScheduleTest, TheIntervalsOfTheCurrentConfigurationApplyFromTheNextPass) {
  ManualClock clock;
  HousekeepingSchedule schedule;
  HousekeepingIntervals slow = intervals();
  slow.delivery = 5s;
  (void)schedule.take_due(clock.now(), slow, true, true);  // next delivery at 5 s
  clock.advance(1s);
  EXPECT_FALSE(schedule.take_due(clock.now(), intervals(), true, true).deliver);
  clock.advance(4s);
  EXPECT_TRUE(schedule.take_due(clock.now(), intervals(), true, true).deliver);
  clock.advance(1s);  // a reload made it 1 s again
  EXPECT_TRUE(schedule.take_due(clock.now(), intervals(), true, true).deliver);
}

EscalationRequest outage(Severity level, const std::string& task_id) {
  EscalationRequest r;
  r.level = level;
  r.error = Error::classified_as(ErrorType::external_service_down, level, "upstream is down");
  r.agent = "reviewer";
  r.task_id = task_id;
  r.task_type = "code_review";
  r.labels = {
      {"agent", "reviewer"}, {"error_type", "external_service_down"}, {"task_type", "code_review"}};
  return r;
}

class StorePassTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = mend::testing::open_store_that_fails_fast(dir_.file("mend.db"));
    ASSERT_NE(store_, nullptr);
    EscalatorOptions o;
    o.routes = {{"on-call", {"file"}}, {"engineering", {"file"}}, {"emergency", {"file"}}};
    escalator_ = std::make_unique<Escalator>(*store_, clock_, o);
    EscalationBacklog::Options b;
    b.retry_initial = 100ms;
    b.retry_max = 400ms;
    backlog_ = std::make_unique<EscalationBacklog>(clock_, b);
    dispatcher_ = std::make_unique<NotificationDispatcher>(*store_, clock_, random_);
    dispatcher_->add_receiver(std::make_unique<FileReceiver>("file", lines_path_));
  }

  StorePassReport pass(bool deliver, bool check_slas) {
    return run_store_pass({.backlog = *backlog_,
                           .escalator = *escalator_,
                           .dispatcher = *dispatcher_,
                           .store = *store_,
                           .tasks_retained = 1},
                          deliver, check_slas);
  }

  std::vector<std::string> delivered_lines() const {
    std::ifstream in(lines_path_);
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
  }

  TempDir dir_{"mend-housekeeping"};
  std::string lines_path_ = dir_.file("notifications.jsonl");
  ManualClock clock_;
  SeededRandom random_{11};
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<Escalator> escalator_;
  std::unique_ptr<EscalationBacklog> backlog_;
  std::unique_ptr<NotificationDispatcher> dispatcher_;
};

TEST_F(StorePassTest, EscalationsKeptWhileTheStoreRefusedAreWrittenAndNotifiedInOnePass) {
  {
    WriteLockHolder lock(dir_.file("mend.db"));
    Result<EscalationTaken> kept = backlog_->escalate(*escalator_, outage(Severity::high, "t1"));
    ASSERT_TRUE(kept.ok()) << kept.error().describe();
    ASSERT_TRUE(kept->pending);
  }
  clock_.advance(1s);  // past the backlog's retry delay
  StorePassReport report = pass(/*deliver=*/true, /*check_slas=*/false);
  EXPECT_EQ(report.kept_escalations.written, 1);
  ASSERT_EQ(report.kept_escalations.records.size(), 1u);
  EXPECT_EQ(report.kept_escalations.records[0].record, "TKT-1");
  EXPECT_EQ(report.delivery.delivered, 1);
  EXPECT_TRUE(report.sla_breaches.empty());
  std::vector<std::string> lines = delivered_lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_THAT(lines[0], HasSubstr("\"TKT-1\""));
}

TEST_F(StorePassTest, AnSlaCheckReEscalatesABreachOnlyWhenItIsDueAndOnlyInAnSlaPass) {
  Result<EscalationTaken> taken = escalator_->escalate(outage(Severity::high, "t1"));
  ASSERT_TRUE(taken.ok()) << taken.error().describe();

  clock_.advance(1h);  // a high record's acknowledgement is due after 2 h
  EXPECT_TRUE(pass(true, true).sla_breaches.empty());

  clock_.advance(61min);
  // A delivery pass alone does not check SLAs.
  EXPECT_TRUE(pass(true, false).sla_breaches.empty());
  StorePassReport report = pass(false, true);
  ASSERT_EQ(report.sla_breaches.size(), 1u);
  EXPECT_EQ(report.sla_breaches[0].display_id(), "TKT-1");
  EXPECT_EQ(report.sla_breaches[0].level, Severity::critical);
  EXPECT_TRUE(report.sla_error.empty());
  // An SLA pass alone delivers nothing: the re-escalation's messages wait for a delivery pass.
  EXPECT_EQ(report.delivery.delivered, 0);
  EXPECT_GT(pass(true, false).delivery.delivered, 0);
}

TEST_F(StorePassTest, AnSlaPassPrunesFinishedTasksBeyondWhatIsRetained) {
  for (const char* id : {"a", "b", "c"}) {
    StoredTask task;
    task.id = id;
    task.status = "running";
    task.submitted_at = clock_.wall_now();
    store_->write_tasks({{TaskWrite::Kind::accept, task}}, 1);
    task.status = "succeeded";
    task.finished_at = clock_.wall_now();
    store_->write_tasks({{TaskWrite::Kind::finish, task}}, 1);
    clock_.advance(1s);
  }
  EXPECT_EQ(pass(true, false).tasks_pruned, 0u);
  EXPECT_EQ(pass(false, true).tasks_pruned, 2u);  // tasks_retained is 1
}

TEST_F(StorePassTest, AStoreThatRefusesThrowsAndTheNextPassDeliversAtLeastOnce) {
  ASSERT_TRUE(escalator_->escalate(outage(Severity::high, "t1")).ok());
  {
    WriteLockHolder lock(dir_.file("mend.db"));
    EXPECT_ANY_THROW(pass(true, true));
  }
  StorePassReport report = pass(true, true);
  EXPECT_EQ(report.delivery.delivered, 1);
  // The locked pass may have handed the message to the receiver before the store refused to mark
  // it delivered: then it goes again (at least once), with the same delivery key to dedup by.
  std::vector<std::string> lines = delivered_lines();
  ASSERT_GE(lines.size(), 1u);
  ASSERT_LE(lines.size(), 2u);
  const auto key_of = [](const std::string& line) {
    return nlohmann::json::parse(line).at("delivery_key").get<std::string>();
  };
  EXPECT_EQ(key_of(lines.front()), key_of(lines.back()));
  EXPECT_EQ(pass(true, true).delivery.delivered, 0);  // marked delivered this time
}

}  // namespace
}  // namespace mend::server_detail
