#include "mend/store/escalator.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "mend/store/sqlite_store.h"
#include "mend_test/temp_dir.h"

namespace mend {
namespace {

using std::chrono::hours;
using std::chrono::minutes;
using std::chrono::seconds;
using ::testing::HasSubstr;

using mend::testing::TempDir;

EscalationRequest request(Severity level, std::string agent = "senior-backend-developer",
                          ErrorType type = ErrorType::external_service_down,
                          std::string task_id = "t1") {
  EscalationRequest r;
  r.level = level;
  r.error = Error::classified_as(type, level, "upstream is down");
  r.agent = agent;
  r.task_id = std::move(task_id);
  r.task_type = "code_review";
  r.labels = {
      {"agent", agent}, {"error_type", std::string(to_string(type))}, {"task_type", "code_review"}};
  return r;
}

class EscalatorTest : public ::testing::Test {
 protected:
  EscalatorTest() {
    auto opened = SqliteStore::open(dir.file("mend.db"));
    EXPECT_TRUE(opened.ok()) << opened.error().describe();
    store = std::move(*opened);
  }
  Escalator make(EscalationOptions policy = {}) {
    EscalatorOptions o;
    o.policy = std::move(policy);
    o.routes = {{"engineering", {"webhook"}},
                {"on-call", {"webhook", "slack"}},
                {"emergency", {"webhook", "pagerduty"}}};
    return Escalator(*store, clock, o);
  }
  std::vector<OutboxMessage> pending() { return store->outbox(OutboxState::pending, 1000); }

  TempDir dir;
  ManualClock clock;
  std::unique_ptr<SqliteStore> store;
};

TEST_F(EscalatorTest, LowIsLoggedWithoutARecord) {
  Escalator e = make();
  Result<EscalationTaken> t = e.escalate(request(Severity::low));
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->action, "logged");
  EXPECT_TRUE(t->retry_recommended);
  EXPECT_EQ(t->record_id, 0);
  EXPECT_TRUE(store->records({}).empty());
  EXPECT_TRUE(pending().empty());
}

TEST_F(EscalatorTest, MediumOpensATicketAndNotifiesTheTeamChannel) {
  Escalator e = make();
  Result<EscalationTaken> t = e.escalate(request(Severity::medium));
  ASSERT_TRUE(t.ok()) << t.error().describe();
  EXPECT_TRUE(t->created);
  EXPECT_EQ(t->record, "TKT-" + std::to_string(t->record_id));
  EXPECT_EQ(t->action, "notified_and_ticketed");
  EXPECT_EQ(t->sla, hours(24));
  std::optional<EscalationRecord> r = store->record(t->record_id);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->kind, RecordKind::ticket);
  EXPECT_EQ(r->channel, "engineering");
  EXPECT_EQ(r->sla_due, clock.wall_now() + hours(24));
  EXPECT_THAT(r->title, HasSubstr("external_service_down"));
  auto messages = pending();
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(messages[0].receiver, "webhook");
  EXPECT_EQ(messages[0].event, "trigger");
  nlohmann::json payload = nlohmann::json::parse(messages[0].payload);
  EXPECT_EQ(payload["record"], r->display_id());
  EXPECT_EQ(payload["level"], "medium");
  EXPECT_EQ(payload["fingerprint"], r->fingerprint);
  // One shape for a record: the message holds the record as the API shows it, plus the change,
  // and keeps the older names "record" and "record_id".
  nlohmann::json record = nlohmann::json::parse(r->to_json());
  for (const auto& [key, value] : record.items()) EXPECT_EQ(payload[key], value) << key;
  EXPECT_EQ(payload["id"], r->display_id());
  EXPECT_EQ(payload["number"], r->id);
  EXPECT_EQ(payload["record_id"], r->id);
  EXPECT_EQ(payload["event"], "trigger");
  EXPECT_EQ(payload["actor"], "mend");
}

TEST_F(EscalatorTest, HighAssignsOnCallAndSchedulesAReview) {
  Escalator e = make();
  Result<EscalationTaken> t = e.escalate(request(Severity::high));
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->action, "high_priority_alert");
  EXPECT_EQ(t->assignee, "on-call-engineer");
  std::optional<EscalationRecord> r = store->record(t->record_id);
  ASSERT_TRUE(r->review_at.has_value());
  EXPECT_EQ(r->sla_due, clock.wall_now() + hours(2));
  EXPECT_EQ(pending().size(), 2u);  // webhook and slack
}

TEST_F(EscalatorTest, CriticalOpensAnIncidentWithAWarRoomAndPages) {
  Escalator e = make({.war_room_url_template = "https://war.test/{id}"});
  Result<EscalationTaken> t = e.escalate(request(Severity::critical));
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->kind, RecordKind::incident);
  EXPECT_EQ(t->record, "INC-" + std::to_string(t->record_id));
  EXPECT_EQ(t->war_room_url, "https://war.test/" + t->record);
  EXPECT_EQ(t->sla, minutes(15));
  std::vector<std::string> events;
  for (const TimelineEntry& entry : store->timeline(t->record_id)) events.push_back(entry.event);
  EXPECT_THAT(events, ::testing::Contains("war_room_opened"));
  auto messages = pending();
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_EQ(messages[1].receiver, "pagerduty");
}

TEST_F(EscalatorTest, RepeatsOfAFingerprintCountOnOneRecordAndNotifyOnce) {
  Escalator e = make();
  std::int64_t id = 0;
  for (int i = 0; i < 200; ++i) {
    clock.advance(seconds(1));
    Result<EscalationTaken> t =
        e.escalate(request(Severity::medium, "senior-backend-developer",
                           ErrorType::external_service_down, "t" + std::to_string(i)));
    ASSERT_TRUE(t.ok());
    if (i == 0) id = t->record_id;
    EXPECT_EQ(t->record_id, id);
    EXPECT_EQ(t->created, i == 0);
    EXPECT_EQ(t->occurrences, i + 1);
  }
  EXPECT_EQ(store->records({}).size(), 1u);
  EXPECT_EQ(store->record(id)->last_seen_at, clock.wall_now());
  EXPECT_EQ(pending().size(), 1u);
  // Another agent is another fingerprint: another ticket.
  ASSERT_TRUE(e.escalate(request(Severity::medium, "senior-ai-engineer")).ok());
  EXPECT_EQ(store->records({}).size(), 2u);
}

TEST_F(EscalatorTest, AnUnacknowledgedCriticalIncidentIsReescalatedAfter15Minutes) {
  Escalator e = make();
  Result<EscalationTaken> t = e.escalate(request(Severity::critical));
  ASSERT_TRUE(t.ok());
  const std::size_t before = pending().size();

  clock.advance(minutes(14) + seconds(59));
  Result<std::vector<EscalationRecord>> none = e.check_slas();
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());

  clock.advance(seconds(1));  // 15 min: the SLA has passed
  Result<std::vector<EscalationRecord>> raised = e.check_slas();
  ASSERT_TRUE(raised.ok());
  ASSERT_EQ(raised->size(), 1u);
  EXPECT_EQ((*raised)[0].id, t->record_id);
  EXPECT_EQ((*raised)[0].tier, 1);
  EXPECT_EQ((*raised)[0].sla_due, clock.wall_now() + minutes(15));  // a fresh clock
  auto messages = pending();
  ASSERT_EQ(messages.size(), before + 2);
  EXPECT_EQ(messages.back().event, "reescalate");

  // The same check again at the same time raises nothing and notifies nobody twice.
  EXPECT_TRUE(e.check_slas()->empty());
  EXPECT_EQ(pending().size(), before + 2);
  std::vector<std::string> events;
  for (const TimelineEntry& entry : store->timeline(t->record_id)) events.push_back(entry.event);
  EXPECT_THAT(events, ::testing::Contains("reescalated"));
}

TEST_F(EscalatorTest, AnAcknowledgedCriticalIncidentIsNotReescalated) {
  Escalator e = make();
  Result<EscalationTaken> t = e.escalate(request(Severity::critical));
  ASSERT_TRUE(t.ok());
  clock.advance(minutes(10));
  Result<EscalationRecord> acked = e.acknowledge(t->record_id, "alice");
  ASSERT_TRUE(acked.ok());
  EXPECT_EQ(acked->status, RecordStatus::acknowledged);
  EXPECT_EQ(acked->acknowledged_by, "alice");
  const std::size_t after_ack = pending().size();
  clock.advance(hours(3));
  Result<std::vector<EscalationRecord>> raised = e.check_slas();
  ASSERT_TRUE(raised.ok());
  EXPECT_TRUE(raised->empty());
  EXPECT_EQ(pending().size(), after_ack);
  EXPECT_EQ(store->record(t->record_id)->tier, 0);
}

TEST_F(EscalatorTest, AMediumTicketClimbsToHighWhenItsSlaPasses) {
  Escalator e = make();
  Result<EscalationTaken> t = e.escalate(request(Severity::medium));
  ASSERT_TRUE(t.ok());
  clock.advance(hours(24));
  Result<std::vector<EscalationRecord>> raised = e.check_slas();
  ASSERT_EQ(raised->size(), 1u);
  EXPECT_EQ((*raised)[0].level, Severity::high);
  EXPECT_EQ((*raised)[0].channel, "on-call");
  EXPECT_EQ((*raised)[0].assignee, "on-call-engineer");
  // The next occurrence reports the level the record has reached.
  Result<EscalationTaken> again = e.escalate(request(Severity::medium));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->record_id, t->record_id);
  EXPECT_EQ(again->level, Severity::high);
  // Two more hours unacknowledged: critical, and with it a war room.
  clock.advance(hours(2));
  Result<std::vector<EscalationRecord>> critical = e.check_slas();
  ASSERT_EQ(critical->size(), 1u);
  EXPECT_EQ((*critical)[0].level, Severity::critical);
  EXPECT_FALSE((*critical)[0].war_room_url.empty());
}

TEST_F(EscalatorTest, LifecycleNotifiesEachStateChangeOnce) {
  Escalator e = make();
  Result<EscalationTaken> t = e.escalate(request(Severity::medium));
  ASSERT_TRUE(t.ok());
  clock.advance(minutes(5));
  ASSERT_TRUE(e.acknowledge(t->record_id, "bob").ok());
  ASSERT_TRUE(e.acknowledge(t->record_id, "bob").ok());  // no change, no notification
  clock.advance(minutes(25));
  Result<EscalationRecord> resolved = e.resolve(t->record_id, "bob");
  ASSERT_TRUE(resolved.ok());
  EXPECT_EQ(resolved->status, RecordStatus::resolved);
  ASSERT_TRUE(e.resolve(t->record_id, "bob").ok());  // idempotent
  std::vector<std::string> events;
  for (const OutboxMessage& m : pending()) events.push_back(m.event);
  EXPECT_THAT(events, ::testing::ElementsAre("trigger", "acknowledge", "resolve"));

  Result<EscalationRecord> late = e.acknowledge(t->record_id, "carol");
  ASSERT_FALSE(late.ok());
  EXPECT_THAT(late.error().message, HasSubstr("already resolved"));
  EXPECT_FALSE(e.acknowledge(t->record_id, "").ok());
  EXPECT_FALSE(e.acknowledge(999, "carol").ok());

  // Resolved: the next occurrence opens a new ticket.
  Result<EscalationTaken> next = e.escalate(request(Severity::medium));
  EXPECT_TRUE(next->created);
  EXPECT_NE(next->record_id, t->record_id);

  ResponseTimes rt = response_times(store->records({}));
  EXPECT_EQ(rt.mtta, minutes(5));
  EXPECT_EQ(rt.mttr, minutes(30));
}

TEST_F(EscalatorTest, AWorseOccurrenceRaisesTheActiveRecordAndPages) {
  Escalator e = make({.war_room_url_template = "https://war.test/{id}"});
  Result<EscalationTaken> first = e.escalate(request(Severity::medium));
  ASSERT_TRUE(first.ok());
  Result<EscalationTaken> worse = e.escalate(request(Severity::critical));
  ASSERT_TRUE(worse.ok());
  EXPECT_FALSE(worse->created);
  EXPECT_EQ(worse->record_id, first->record_id);
  EXPECT_EQ(worse->level, Severity::critical);
  EXPECT_EQ(worse->war_room_url, "https://war.test/TKT-" + std::to_string(first->record_id));
  std::optional<EscalationRecord> r = store->record(first->record_id);
  EXPECT_EQ(r->channel, "emergency");
  EXPECT_EQ(r->sla_due, clock.wall_now() + minutes(15));
  std::vector<std::string> sent;
  for (const OutboxMessage& m : pending()) sent.push_back(m.receiver + ":" + m.event);
  EXPECT_THAT(sent, ::testing::ElementsAre("webhook:trigger", "webhook:reescalate",
                                           "pagerduty:reescalate"));
  // A milder occurrence changes nothing.
  ASSERT_TRUE(e.escalate(request(Severity::medium)).ok());
  EXPECT_EQ(store->record(first->record_id)->level, Severity::critical);
  EXPECT_EQ(pending().size(), 3u);
}

TEST_F(EscalatorTest, AChannelWithoutReceiversSaysSoInTheTimeline) {
  EscalatorOptions o;  // no routes at all
  Escalator e(*store, clock, o);
  Result<EscalationTaken> t = e.escalate(request(Severity::medium));
  ASSERT_TRUE(t.ok());
  EXPECT_TRUE(pending().empty());
  std::vector<std::string> events;
  for (const TimelineEntry& entry : store->timeline(t->record_id)) events.push_back(entry.event);
  EXPECT_THAT(events, ::testing::Contains("not_notified"));
}

TEST_F(EscalatorTest, TwoEscalatorsOnOneFileShareRecordsAndNeverNotifyTwice) {
  Escalator first = make();
  ASSERT_TRUE(first.escalate(request(Severity::critical)).ok());
  auto second_store = SqliteStore::open(dir.file("mend.db"));
  ASSERT_TRUE(second_store.ok());
  EscalatorOptions o;
  o.routes = {{"emergency", {"webhook", "pagerduty"}}};
  Escalator second(**second_store, clock, o);
  Result<EscalationTaken> t = second.escalate(request(Severity::critical));
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(t->created);
  EXPECT_EQ(t->occurrences, 2);
  clock.advance(minutes(15));
  // Both run their SLA check at the same instant: one re-escalation, one set of messages.
  ASSERT_TRUE(first.check_slas().ok());
  ASSERT_TRUE(second.check_slas().ok());
  int reescalations = 0;
  for (const OutboxMessage& m : pending()) reescalations += m.event == "reescalate";
  EXPECT_EQ(reescalations, 2);  // one per receiver
}

}  // namespace
}  // namespace mend
