// Every store's escalation records: repeats counted on one record, updates, filters and
// timeline entries.
#include <gtest/gtest.h>

#include <cctype>
#include <chrono>
#include <string>
#include <vector>

#include "store_conformance_test_support.h"

namespace mend {
namespace {

using std::chrono::minutes;
using std::chrono::seconds;
using store_test_support::a_full_record;
using store_test_support::a_record;
using store_test_support::expect_same_record;
using store_test_support::kT0;
using store_test_support::StoreTest;

using StoreRecordsTest = StoreTest;
INSTANTIATE_TEST_SUITE_P(Stores, StoreRecordsTest, store_test_support::kEveryStore,
                         store_test_support::store_name);

TEST_P(StoreRecordsTest, OpenOrTouchCountsRepeatsOnOneRecord) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  RecordUpsert first = store->open_or_touch(a_record("fp"), kT0);
  RecordUpsert second = store->open_or_touch(a_record("fp"), kT0 + seconds(10));
  RecordUpsert third = store->open_or_touch(a_record("fp"), kT0 + seconds(20));
  EXPECT_TRUE(first.created);
  EXPECT_FALSE(second.created);
  EXPECT_FALSE(third.created);
  EXPECT_GT(first.record.id, 0);
  EXPECT_EQ(second.record.id, first.record.id);
  EXPECT_EQ(third.record.id, first.record.id);
  EXPECT_EQ(first.record.occurrences, 1);
  EXPECT_EQ(third.record.occurrences, 3);
  EXPECT_TRUE(third.record.last_seen_at == kT0 + seconds(20));
  EXPECT_TRUE(third.record.created_at == kT0);
  expect_same_record(*store->record(first.record.id), third.record);

  EXPECT_EQ(store->records({}).size(), 1u);
  std::vector<TimelineEntry> timeline = store->timeline(first.record.id);
  ASSERT_EQ(timeline.size(), 3u);
  EXPECT_EQ(timeline[0].event, "opened");
  EXPECT_EQ(timeline[1].event, "occurrence");
  EXPECT_EQ(timeline[2].event, "occurrence");
  EXPECT_TRUE(timeline[2].at == kT0 + seconds(20));
  for (const TimelineEntry& e : timeline) EXPECT_EQ(e.actor, "mend");
}

TEST_P(StoreRecordsTest, AnAcknowledgedRecordStillAbsorbsRepeatsButAResolvedOneDoesNot) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  EscalationRecord r = store->open_or_touch(a_record("fp"), kT0).record;
  r.status = RecordStatus::acknowledged;
  r.acknowledged_at = kT0 + minutes(1);
  ASSERT_TRUE(store->update_record(r));
  EXPECT_FALSE(store->open_or_touch(a_record("fp"), kT0 + minutes(2)).created);

  r = *store->record(r.id);
  r.status = RecordStatus::resolved;
  r.resolved_at = kT0 + minutes(3);
  ASSERT_TRUE(store->update_record(r));
  RecordUpsert again = store->open_or_touch(a_record("fp"), kT0 + minutes(4));
  EXPECT_TRUE(again.created);
  EXPECT_NE(again.record.id, r.id);
  EXPECT_EQ(again.record.occurrences, 1);
  EXPECT_EQ(store->record(r.id)->occurrences, 2);  // the resolved one is left alone
  EXPECT_EQ(store->open_or_touch(a_record("fp"), kT0 + minutes(5)).record.id, again.record.id);
}

TEST_P(StoreRecordsTest, UpdateRecordWritesEveryFieldAndReportsAnUnknownId) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  EscalationRecord full = a_full_record();
  full.id = store->open_or_touch(a_record("fp"), kT0).record.id;
  ASSERT_TRUE(store->update_record(full));
  expect_same_record(*store->record(full.id), full);

  full.id = 999;
  EXPECT_FALSE(store->update_record(full));
  EXPECT_FALSE(store->record(999).has_value());
}

TEST_P(StoreRecordsTest, RecordsFiltersByKindStatusAndActivityNewestFirst) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  EscalationRecord incident = a_record("a");
  incident.kind = RecordKind::incident;
  const std::int64_t a = store->open_or_touch(incident, kT0).record.id;
  const std::int64_t b = store->open_or_touch(a_record("b"), kT0).record.id;
  EscalationRecord c = store->open_or_touch(a_record("c"), kT0).record;
  c.status = RecordStatus::resolved;
  ASSERT_TRUE(store->update_record(c));

  auto ids = [&](const RecordFilter& filter) {
    std::vector<std::int64_t> out;
    for (const EscalationRecord& r : store->records(filter)) out.push_back(r.id);
    return out;
  };
  EXPECT_EQ(ids({}), (std::vector<std::int64_t>{c.id, b, a}));
  EXPECT_EQ(ids({.kind = RecordKind::incident}), (std::vector<std::int64_t>{a}));
  EXPECT_EQ(ids({.kind = RecordKind::ticket}), (std::vector<std::int64_t>{c.id, b}));
  EXPECT_EQ(ids({.status = RecordStatus::resolved}), (std::vector<std::int64_t>{c.id}));
  EXPECT_EQ(ids({.active_only = true}), (std::vector<std::int64_t>{b, a}));
  EXPECT_EQ(ids({.limit = 1}), (std::vector<std::int64_t>{c.id}));
  EXPECT_TRUE(ids({.limit = 0}).empty());
}

TEST_P(StoreRecordsTest, ATimelineEntryForAnUnknownRecordIsADatabaseError) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  try {
    store->append_timeline({.record_id = 404, .at = kT0, .event = "notified"});
    FAIL() << "no exception";
  } catch (const Exception& e) {
    EXPECT_EQ(e.error().type, ErrorType::database_error);
    EXPECT_EQ(e.error().severity, Severity::high);
    // "FOREIGN KEY constraint failed" (SQLite), "violates foreign key constraint" (PostgreSQL).
    std::string message = e.error().message;
    for (char& c : message) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    EXPECT_NE(message.find("foreign key"), std::string::npos) << e.error().message;
  }
  EXPECT_TRUE(store->timeline(404).empty());
}

}  // namespace
}  // namespace mend
