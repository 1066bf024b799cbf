// File: src/store/store_test_support.h (tests)
//
// What the stores' tests share: records, outbox messages and tasks to store, and comparisons.
// The conformance fixture (store_conformance_test_support.h) and the SQLite-only fixture
// (sqlite_store_test_support.h) both use them.
#ifndef MEND_SRC_STORE_STORE_TEST_SUPPORT_H_
#define MEND_SRC_STORE_STORE_TEST_SUPPORT_H_

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "mend/core/clock.h"
#include "mend/core/store.h"

namespace mend::store_test_support {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;

inline constexpr WallTime kT0 = ManualClock::kDefaultWallStart;

inline EscalationRecord a_record(std::string fingerprint) {
  EscalationRecord r;
  r.fingerprint = std::move(fingerprint);
  r.title = "code review agent keeps timing out";
  r.created_at = kT0;
  r.last_seen_at = kT0;
  r.sla_due = kT0 + hours(24);
  return r;
}

// Every field set to something other than its default.
inline EscalationRecord a_full_record() {
  EscalationRecord r;
  r.kind = RecordKind::incident;
  r.fingerprint = "00ff00ff00ff00ff";
  r.level = Severity::critical;
  r.tier = 2;
  r.status = RecordStatus::acknowledged;
  r.title = "deployments failing";
  r.description = "every deployment since 10:02 fails\nwith \"quotes\" and 'apostrophes'";
  r.agent = "deployer";
  r.task_type = "deployment";
  r.error_type = ErrorType::database_error;
  r.priority = "critical";
  r.assignee = "on-call-engineer";
  r.channel = "emergency";
  r.occurrences = 1;
  r.created_at = kT0 + milliseconds(1);
  r.last_seen_at = kT0 + milliseconds(2);
  r.sla_due = kT0 + minutes(15);
  r.review_at = kT0 + hours(24);
  r.acknowledged_at = kT0 + minutes(3);
  r.acknowledged_by = "alice";
  r.resolved_at = kT0 + minutes(40);
  r.resolved_by = "bob";
  r.war_room_url = "https://chat.example.com/war-room/INC-1";
  return r;
}

inline void expect_same_record(const EscalationRecord& a, const EscalationRecord& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.kind, b.kind);
  EXPECT_EQ(a.fingerprint, b.fingerprint);
  EXPECT_EQ(a.level, b.level);
  EXPECT_EQ(a.tier, b.tier);
  EXPECT_EQ(a.status, b.status);
  EXPECT_EQ(a.title, b.title);
  EXPECT_EQ(a.description, b.description);
  EXPECT_EQ(a.agent, b.agent);
  EXPECT_EQ(a.task_type, b.task_type);
  EXPECT_EQ(a.error_type, b.error_type);
  EXPECT_EQ(a.priority, b.priority);
  EXPECT_EQ(a.assignee, b.assignee);
  EXPECT_EQ(a.channel, b.channel);
  EXPECT_EQ(a.occurrences, b.occurrences);
  EXPECT_TRUE(a.created_at == b.created_at);
  EXPECT_TRUE(a.last_seen_at == b.last_seen_at);
  EXPECT_TRUE(a.sla_due == b.sla_due);
  EXPECT_TRUE(a.review_at == b.review_at);
  EXPECT_TRUE(a.acknowledged_at == b.acknowledged_at);
  EXPECT_EQ(a.acknowledged_by, b.acknowledged_by);
  EXPECT_TRUE(a.resolved_at == b.resolved_at);
  EXPECT_EQ(a.resolved_by, b.resolved_by);
  EXPECT_EQ(a.war_room_url, b.war_room_url);
}

inline OutboxMessage a_message(std::string receiver, std::string dedup_key,
                               WallTime next_attempt_at) {
  OutboxMessage m;
  m.receiver = std::move(receiver);
  m.dedup_key = std::move(dedup_key);
  m.event = "trigger";
  m.payload = R"({"event":"trigger"})";
  m.created_at = kT0;
  m.next_attempt_at = next_attempt_at;
  return m;
}

inline std::vector<std::int64_t> ids_of(const std::vector<OutboxMessage>& messages) {
  std::vector<std::int64_t> ids;
  for (const OutboxMessage& m : messages) ids.push_back(m.id);
  return ids;
}

inline StoredTask running_task(std::string id, std::string key = "") {
  StoredTask t;
  t.id = std::move(id);
  t.idempotency_key = std::move(key);
  t.request_digest = "digest-of-" + t.id;
  t.type = "deployment";
  t.agent = "deployer";
  t.request_json = R"({"type":"deployment","agent":"deployer","payload":{"build":7}})";
  t.submitted_at = kT0;
  t.deadline_at = kT0 + minutes(5);
  return t;
}

inline TaskWrite accept(StoredTask t) {
  return {TaskWrite::Kind::accept, std::move(t)};
}

}  // namespace mend::store_test_support

#endif  // MEND_SRC_STORE_STORE_TEST_SUPPORT_H_
