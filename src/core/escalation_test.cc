#include "mend/core/escalation.h"

#include <gtest/gtest.h>

namespace mend {
namespace {

using std::chrono::hours;
using std::chrono::minutes;

const WallTime kNow = ManualClock::kDefaultWallStart;

TEST(EscalationPolicyTest, SpecificationLevels) {
  EscalationPolicy policy;
  EscalationPlan low = policy.plan(Severity::low);
  EXPECT_EQ(low.action, "logged");
  EXPECT_TRUE(low.retry_recommended);
  EXPECT_FALSE(low.human_intervention);
  EXPECT_FALSE(low.ticket || low.incident);
  EXPECT_TRUE(low.channel.empty());

  EscalationPlan medium = policy.plan(Severity::medium);
  EXPECT_EQ(medium.action, "notified_and_ticketed");
  EXPECT_TRUE(medium.ticket);
  EXPECT_EQ(medium.channel, "engineering");
  EXPECT_EQ(medium.sla, hours(24));

  EscalationPlan high = policy.plan(Severity::high);
  EXPECT_EQ(high.action, "high_priority_alert");
  EXPECT_EQ(high.channel, "on-call");
  EXPECT_EQ(high.assignee, "on-call-engineer");
  EXPECT_EQ(high.priority, "high");
  EXPECT_EQ(high.sla, hours(2));
  EXPECT_TRUE(high.review_in.has_value());

  EscalationPlan critical = policy.plan(Severity::critical);
  EXPECT_EQ(critical.action, "critical_incident");
  EXPECT_TRUE(critical.incident && critical.war_room && critical.page);
  EXPECT_FALSE(critical.ticket);
  EXPECT_EQ(critical.channel, "emergency");
  EXPECT_EQ(critical.sla, minutes(15));
}

TEST(EscalationPolicyTest, LowIsRaisedToMediumOnlyWhenUnresolved) {
  EXPECT_EQ(EscalationPolicy::effective_level(Severity::low, false), Severity::medium);
  EXPECT_EQ(EscalationPolicy::effective_level(Severity::low, true), Severity::low);
  EXPECT_EQ(EscalationPolicy::effective_level(Severity::high, false), Severity::high);
}

TEST(EscalationPolicyTest, FingerprintUsesOnlyConfiguredLabelsInAnyOrder) {
  EscalationPolicy policy;
  const std::string a = policy.fingerprint(
      {{"agent", "x"}, {"error_type", "api_error"}, {"task_type", "deploy"}, {"task_id", "1"}});
  const std::string b = policy.fingerprint(
      {{"task_type", "deploy"}, {"agent", "x"}, {"error_type", "api_error"}, {"task_id", "2"}});
  EXPECT_EQ(a, b);  // task_id is not a fingerprint label
  EXPECT_EQ(a.size(), 16u);
  EXPECT_NE(a, policy.fingerprint(
                   {{"agent", "y"}, {"error_type", "api_error"}, {"task_type", "deploy"}}));
  // Value boundaries matter: "ab"+"c" is not "a"+"bc".
  EscalationPolicy two({.fingerprint_labels = {"p", "q"}});
  EXPECT_NE(two.fingerprint({{"p", "ab"}, {"q", "c"}}), two.fingerprint({{"p", "a"}, {"q", "bc"}}));
  // Stable across processes and builds (stored fingerprints must keep matching): a golden value,
  // FNV-1a 64 of "agent" 0xff "a" 0xff, computed independently.
  EXPECT_EQ(EscalationPolicy({.fingerprint_labels = {"agent"}}).fingerprint({{"agent", "a"}}),
            "2270d616560d2c23");
}

TEST(EscalationPolicyTest, OpenRecordAndWarRoomUrl) {
  EscalationPolicy policy({.war_room_url_template = "https://meet.test/{id}?n={number}"});
  EscalationRecord r = policy.open_record(Severity::critical, "fp", "title", "desc", kNow);
  EXPECT_EQ(r.kind, RecordKind::incident);
  EXPECT_EQ(r.sla_due, kNow + minutes(15));
  EXPECT_EQ(r.channel, "emergency");
  r.id = 7;
  EXPECT_EQ(r.display_id(), "INC-7");
  EXPECT_EQ(policy.war_room_url(r), "https://meet.test/INC-7?n=7");
  EscalationRecord t = policy.open_record(Severity::high, "fp", "t", "d", kNow);
  EXPECT_EQ(t.kind, RecordKind::ticket);
  EXPECT_EQ(t.assignee, "on-call-engineer");
  ASSERT_TRUE(t.review_at.has_value());
}

TEST(EscalationPolicyTest, ReescalationClimbsLevelsThenTiersUntilAcknowledged) {
  EscalationPolicy policy({.max_tiers = 2});
  EscalationRecord r = policy.open_record(Severity::medium, "fp", "t", "d", kNow);
  EXPECT_FALSE(policy.reescalation_due(r, kNow + hours(23)).has_value());
  auto step = policy.reescalation_due(r, kNow + hours(24));
  ASSERT_TRUE(step.has_value());
  EXPECT_EQ(step->to_level, Severity::high);
  policy.apply(r, *step, kNow + hours(24));
  EXPECT_EQ(r.level, Severity::high);
  EXPECT_EQ(r.channel, "on-call");
  EXPECT_EQ(r.sla_due, kNow + hours(26));
  step = policy.reescalation_due(r, kNow + hours(26));
  ASSERT_TRUE(step.has_value());
  policy.apply(r, *step, kNow + hours(26));
  EXPECT_EQ(r.level, Severity::critical);
  // At critical: the next tiers, up to max_tiers, then nothing more.
  for (int tier = 1; tier <= 2; ++tier) {
    const WallTime at = r.sla_due;
    step = policy.reescalation_due(r, at);
    ASSERT_TRUE(step.has_value());
    EXPECT_EQ(step->to_tier, tier);
    policy.apply(r, *step, at);
  }
  EXPECT_FALSE(policy.reescalation_due(r, r.sla_due + hours(1)).has_value());

  EscalationRecord acked = policy.open_record(Severity::critical, "fp", "t", "d", kNow);
  acked.status = RecordStatus::acknowledged;
  EXPECT_FALSE(policy.reescalation_due(acked, kNow + hours(5)).has_value());
  EscalationPolicy off({.reescalate = false});
  EXPECT_FALSE(off.reescalation_due(policy.open_record(Severity::critical, "f", "t", "d", kNow),
                                    kNow + hours(1))
                   .has_value());
}

TEST(EscalationPolicyTest, ResponseTimes) {
  EscalationPolicy policy;
  std::vector<EscalationRecord> records(3, policy.open_record(Severity::high, "f", "t", "d", kNow));
  records[0].acknowledged_at = kNow + minutes(4);
  records[0].resolved_at = kNow + minutes(30);
  records[1].acknowledged_at = kNow + minutes(6);
  ResponseTimes rt = response_times(records);
  EXPECT_EQ(rt.acknowledged, 2);
  EXPECT_EQ(rt.resolved, 1);
  EXPECT_EQ(rt.mtta, minutes(5));
  EXPECT_EQ(rt.mttr, minutes(30));
  EXPECT_FALSE(response_times({}).mtta.has_value());
}

TEST(EscalationPolicyTest, InvalidOptionsAreRejected) {
  EXPECT_THROW(EscalationPolicy({.critical_sla = Duration::zero()}), std::invalid_argument);
  EXPECT_THROW(EscalationPolicy({.max_tiers = -1}), std::invalid_argument);
}

TEST(EscalationRecordTest, ToJsonHasOneShapeWithOptionalFieldsOnlyWhenSet) {
  EscalationRecord r;
  r.id = 7;
  r.kind = RecordKind::incident;
  r.level = Severity::critical;
  r.title = "CRITICAL: \"quoted\"\n";
  r.created_at = WallTime{} + hours(1);
  const std::string open = r.to_json();
  EXPECT_NE(open.find(R"("id":"INC-7","number":7,"kind":"incident")"), std::string::npos) << open;
  EXPECT_NE(open.find(R"("title":"CRITICAL: \"quoted\"\n")"), std::string::npos) << open;
  EXPECT_NE(open.find(R"("created_at":"1970-01-01T01:00:00.000Z")"), std::string::npos) << open;
  EXPECT_EQ(open.find("acknowledged_at"), std::string::npos);
  EXPECT_EQ(open.find("war_room_url"), std::string::npos);
  r.acknowledged_at = WallTime{} + hours(2);
  r.acknowledged_by = "ana";
  r.war_room_url = "https://chat.example.com/INC-7";
  const std::string acked = r.to_json();
  EXPECT_NE(acked.find(R"("acknowledged_at":"1970-01-01T02:00:00.000Z","acknowledged_by":"ana")"),
            std::string::npos)
      << acked;
  EXPECT_NE(acked.find(R"("war_room_url":"https://chat.example.com/INC-7")"), std::string::npos);
  EXPECT_EQ(acked.back(), '}');
}

TEST(EscalationNamesTest, RoundTrip) {
  for (RecordStatus s : {RecordStatus::open, RecordStatus::acknowledged, RecordStatus::resolved}) {
    EXPECT_EQ(parse_record_status(to_string(s)), s);
  }
  EXPECT_EQ(parse_record_kind("incident"), RecordKind::incident);
  EXPECT_FALSE(parse_record_kind("bogus").has_value());
}

}  // namespace
}  // namespace mend
