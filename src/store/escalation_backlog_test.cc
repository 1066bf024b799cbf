// EscalationBacklog against a real SQLite file on a manual clock: while another program holds
// the store's write lock, escalations wait in memory (one entry per fingerprint, counting its
// occurrences), later ones queue without trying the store, retries follow the backoff, and once
// the store takes writes again every record opens at the time of its first failure with its exact
// count and its notifications in the outbox; the health callback fires at both ends.
#include "mend/store/escalation_backlog.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "mend/store/sqlite_store.h"
#include "mend_test/temp_dir.h"
#include "mend_test/write_lock_holder.h"

namespace mend {
namespace {

using namespace std::chrono_literals;
using mend::testing::TempDir;
using mend::testing::WriteLockHolder;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

EscalationRequest request(Severity level, const std::string& agent, const std::string& task_id) {
  EscalationRequest r;
  r.level = level;
  r.error = Error::classified_as(ErrorType::external_service_down, level, "upstream is down");
  r.agent = agent;
  r.task_id = task_id;
  r.task_type = "code_review";
  r.labels = {
      {"agent", agent}, {"error_type", "external_service_down"}, {"task_type", "code_review"}};
  return r;
}

class EscalationBacklogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = mend::testing::open_store_that_fails_fast(dir_.file("mend.db"));
    ASSERT_NE(store_, nullptr);
    EscalatorOptions o;
    o.routes = {{"on-call", {"webhook", "slack"}}, {"emergency", {"webhook", "pagerduty"}}};
    escalator_ = std::make_unique<Escalator>(*store_, clock_, o);
    options_.retry_initial = 100ms;
    options_.retry_max = 400ms;
    options_.on_health_change = [this](bool failing, const std::string& error) {
      health_changes_.push_back(failing ? "failing: " + error : "recovered");
    };
  }

  std::vector<EscalationRecord> records() {
    RecordFilter all;
    all.limit = 100;
    return store_->records(all);
  }

  TempDir dir_{"mend-backlog"};
  ManualClock clock_;
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<Escalator> escalator_;
  EscalationBacklog::Options options_;
  std::vector<std::string> health_changes_;
};

TEST_F(EscalationBacklogTest, AWorkingStoreIsWrittenAtOnce) {
  EscalationBacklog backlog(clock_, options_);
  Result<EscalationTaken> t =
      backlog.escalate(*escalator_, request(Severity::high, "reviewer", "t1"));
  ASSERT_TRUE(t.ok()) << t.error().describe();
  EXPECT_FALSE(t->pending);
  EXPECT_EQ(t->record, "TKT-1");
  EXPECT_EQ(backlog.stats().deferred, 0);
  EXPECT_TRUE(health_changes_.empty());
}

TEST_F(EscalationBacklogTest, LowIsLoggedEvenWhileTheStoreIsLocked) {
  EscalationBacklog backlog(clock_, options_);
  WriteLockHolder lock(dir_.file("mend.db"));
  Result<EscalationTaken> t =
      backlog.escalate(*escalator_, request(Severity::low, "reviewer", "t"));
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->action, "logged");
  EXPECT_FALSE(t->pending);
  EXPECT_EQ(backlog.stats().pending, 0u);
}

TEST_F(EscalationBacklogTest, WaitsWhileTheStoreRefusesAndWritesEverythingAfter) {
  EscalationBacklog backlog(clock_, options_);
  const WallTime failed_at = clock_.wall_now();
  auto lock = std::make_unique<WriteLockHolder>(dir_.file("mend.db"));

  Result<EscalationTaken> first =
      backlog.escalate(*escalator_, request(Severity::high, "reviewer", "t1"));
  ASSERT_TRUE(first.ok()) << first.error().describe();
  EXPECT_TRUE(first->pending);
  EXPECT_TRUE(first->record.empty());
  EXPECT_EQ(first->action, "high_priority_alert");
  EXPECT_FALSE(first->fingerprint.empty());
  ASSERT_EQ(health_changes_.size(), 1u);
  EXPECT_THAT(health_changes_[0], HasSubstr("failing: "));
  EXPECT_TRUE(backlog.failing());

  // 999 more of the same outage and one critical failure elsewhere, over the next seconds.
  for (int i = 2; i <= 1000; ++i) {
    clock_.advance(1ms);
    Result<EscalationTaken> t =
        backlog.escalate(*escalator_, request(Severity::high, "reviewer", "t" + std::to_string(i)));
    ASSERT_TRUE(t.ok());
    EXPECT_TRUE(t->pending);
  }
  ASSERT_TRUE(backlog.escalate(*escalator_, request(Severity::critical, "deployer", "d1")).ok());
  EscalationBacklog::Stats s = backlog.stats();
  EXPECT_EQ(s.pending, 2u);  // one entry per fingerprint
  EXPECT_EQ(s.pending_occurrences, 1001);
  EXPECT_EQ(s.deferred, 1001);
  EXPECT_EQ(s.failed_tries, 0);  // later ones waited without trying the locked store
  EXPECT_EQ(health_changes_.size(), 1u);

  // Backoff: nothing before it is due; a due retry that fails doubles the delay.
  // 999 ms have passed since the first failure: the first retry (due after 100 ms) is tried.
  EXPECT_EQ(backlog.retry(*escalator_).written, 0);
  EXPECT_EQ(backlog.stats().failed_tries, 1);  // due after 100 ms: tried, refused
  EXPECT_EQ(backlog.retry(*escalator_).written, 0);
  EXPECT_EQ(backlog.stats().failed_tries, 1);  // next try only 200 ms later
  clock_.advance(200ms);
  EscalationBacklog::Pass refused = backlog.retry(*escalator_);
  EXPECT_EQ(refused.written, 0);
  EXPECT_FALSE(refused.error.empty());
  EXPECT_EQ(backlog.stats().failed_tries, 2);
  EXPECT_TRUE(records().empty());

  lock->release();
  clock_.advance(399ms);
  EXPECT_EQ(backlog.retry(*escalator_).written, 0);  // 400 ms (the maximum) not over yet
  clock_.advance(1ms);
  EscalationBacklog::Pass pass = backlog.retry(*escalator_);
  EXPECT_EQ(pass.written, 1001);
  EXPECT_TRUE(pass.error.empty());
  ASSERT_EQ(pass.records.size(), 2u);
  EXPECT_EQ(pass.records[0].record, "TKT-1");
  EXPECT_EQ(pass.records[0].occurrences, 1000);
  EXPECT_EQ(pass.records[1].record, "INC-2");  // numbered by row, as every record
  EXPECT_THAT(health_changes_, ElementsAre(::testing::StartsWith("failing: "), "recovered"));
  EXPECT_FALSE(backlog.failing());
  s = backlog.stats();
  EXPECT_EQ(s.pending, 0u);
  EXPECT_EQ(s.written_late, 1001);

  std::vector<EscalationRecord> stored = records();
  ASSERT_EQ(stored.size(), 2u);
  for (const EscalationRecord& r : stored) {
    // Each record and its SLA start at its first failure, not at the late write.
    EXPECT_LE(r.created_at, failed_at + 1000ms) << r.display_id();
  }
  const EscalationRecord& ticket = stored[0].kind == RecordKind::ticket ? stored[0] : stored[1];
  EXPECT_EQ(ticket.occurrences, 1000);
  EXPECT_LT(std::chrono::abs(ticket.created_at - failed_at), 1ms);
  EXPECT_EQ(ticket.sla_due, ticket.created_at + 2h);
  // Their notifications: one per receiver of each record's channel.
  std::vector<OutboxMessage> outbox = store_->outbox(OutboxState::pending, 100);
  EXPECT_EQ(outbox.size(), 4u);
  // A later escalation goes straight through again.
  Result<EscalationTaken> after =
      backlog.escalate(*escalator_, request(Severity::high, "reviewer", "t1001"));
  ASSERT_TRUE(after.ok());
  EXPECT_FALSE(after->pending);
  EXPECT_EQ(after->occurrences, 1001);
}

TEST_F(EscalationBacklogTest, AWorseFailureWhileWaitingOpensAtTheWorseLevel) {
  EscalationBacklog backlog(clock_, options_);
  WriteLockHolder lock(dir_.file("mend.db"));
  ASSERT_TRUE(backlog.escalate(*escalator_, request(Severity::high, "reviewer", "t1")).ok());
  ASSERT_TRUE(backlog.escalate(*escalator_, request(Severity::critical, "reviewer", "t2")).ok());
  lock.release();
  clock_.advance(100ms);
  EscalationBacklog::Pass pass = backlog.retry(*escalator_);
  ASSERT_EQ(pass.records.size(), 1u);
  EXPECT_EQ(pass.records[0].record, "INC-1");
  EXPECT_EQ(pass.records[0].occurrences, 2);
  EXPECT_FALSE(pass.records[0].war_room_url.empty());
}

TEST_F(EscalationBacklogTest, OccurrencesAddedTogetherKeepTheMilestonesTheyPass) {
  EscalationBacklog backlog(clock_, options_);
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(backlog.escalate(*escalator_, request(Severity::high, "reviewer", "t")).ok());
  }
  {
    WriteLockHolder lock(dir_.file("mend.db"));
    for (int i = 0; i < 95; ++i) {
      ASSERT_TRUE(backlog.escalate(*escalator_, request(Severity::high, "reviewer", "u")).ok());
    }
  }
  clock_.advance(100ms);
  EscalationBacklog::Pass pass = backlog.retry(*escalator_);
  ASSERT_EQ(pass.records.size(), 1u);
  EXPECT_EQ(pass.records[0].occurrences, 103);
  std::vector<std::string> occurrences;
  for (const TimelineEntry& e : store_->timeline(pass.records[0].record_id)) {
    if (e.event == "occurrence") occurrences.push_back(e.detail);
  }
  // 2..8 one by one, then 8 -> 103 passes 100: its line is kept.
  EXPECT_EQ(occurrences.size(), 8u);
  EXPECT_EQ(occurrences.back(), "occurrence 100");
}

TEST_F(EscalationBacklogTest, BeyondMaxPendingANewFingerprintIsDroppedAndCounted) {
  options_.max_pending = 1;
  EscalationBacklog backlog(clock_, options_);
  WriteLockHolder lock(dir_.file("mend.db"));
  ASSERT_TRUE(backlog.escalate(*escalator_, request(Severity::high, "reviewer", "t1")).ok());
  ASSERT_TRUE(backlog.escalate(*escalator_, request(Severity::high, "reviewer", "t2")).ok());
  Result<EscalationTaken> other =
      backlog.escalate(*escalator_, request(Severity::high, "deployer", "d1"));
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.error().type, ErrorType::database_error);
  EXPECT_THAT(other.error().message, HasSubstr("dropped"));
  EscalationBacklog::Stats s = backlog.stats();
  EXPECT_EQ(s.pending, 1u);
  EXPECT_EQ(s.pending_occurrences, 2);
  EXPECT_EQ(s.dropped, 1);
}

TEST_F(EscalationBacklogTest, ALongMessageWaitsCut) {
  options_.max_message_bytes = 64;
  EscalationBacklog backlog(clock_, options_);
  auto lock = std::make_unique<WriteLockHolder>(dir_.file("mend.db"));
  EscalationRequest r = request(Severity::high, "reviewer", "t1");
  r.error.message = std::string(1 << 20, 'x');
  ASSERT_TRUE(backlog.escalate(*escalator_, r).ok());
  lock->release();
  clock_.advance(100ms);
  ASSERT_EQ(backlog.retry(*escalator_).written, 1);
  std::vector<EscalationRecord> stored = records();
  ASSERT_EQ(stored.size(), 1u);
  EXPECT_LT(stored[0].description.size(), 200u);
}

TEST_F(EscalationBacklogTest, RetryNowIgnoresTheBackoff) {
  EscalationBacklog backlog(clock_, options_);
  auto lock = std::make_unique<WriteLockHolder>(dir_.file("mend.db"));
  ASSERT_TRUE(backlog.escalate(*escalator_, request(Severity::high, "reviewer", "t1")).ok());
  lock->release();
  EXPECT_EQ(backlog.retry(*escalator_).written, 0);  // not due
  EXPECT_EQ(backlog.retry_now(*escalator_).written, 1);
}

}  // namespace
}  // namespace mend
