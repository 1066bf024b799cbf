// What every store writes it reads back: every field of every table across a reopen, and times
// to the millisecond.
#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "store_conformance_test_support.h"

namespace mend {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using store_test_support::a_full_record;
using store_test_support::a_message;
using store_test_support::a_record;
using store_test_support::expect_same_record;
using store_test_support::kT0;
using store_test_support::StoreTest;

using StoreRoundTripTest = StoreTest;
INSTANTIATE_TEST_SUITE_P(Stores, StoreRoundTripTest, store_test_support::kEveryStore,
                         store_test_support::store_name);

TEST_P(StoreRoundTripTest, EveryFieldOfEveryTableSurvivesAReopen) {
  EscalationRecord full = a_full_record();
  EscalationRecord bare = a_record("bare");  // optional times unset
  TimelineEntry note{.record_id = 0,
                     .at = kT0 + seconds(5),
                     .event = "war_room_opened",
                     .actor = "carol",
                     .detail = "https://chat.example.com/war-room/INC-1"};
  OutboxMessage message = a_message("pagerduty", "INC-1/trigger", kT0 + seconds(30));
  message.event = "reescalate";
  message.state = OutboxState::dead;
  message.attempts = 7;
  message.delivered_at = kT0 + seconds(31);
  message.last_error = "HTTP 500";
  JournalEntry entry{.id = 0,
                     .task_id = "task-42",
                     .task_type = "code_review",
                     .primary_agent = "reviewer",
                     .status = "succeeded_after_retry",
                     .answered_by = "reviewer-2",
                     .attempts = 3,
                     .record_id = 0,
                     .started_at = kT0 + milliseconds(100),
                     .finished_at = kT0 + milliseconds(2345),
                     .outcome_json = R"({"status":"ok","value":[1,2,3]})"};
  {
    auto store = open_store();
    ASSERT_NE(store, nullptr);
    RecordUpsert created = store->open_or_touch(full, kT0);
    ASSERT_TRUE(created.created);
    full.id = created.record.id;
    expect_same_record(created.record, full);
    bare.id = store->open_or_touch(bare, kT0).record.id;
    note.record_id = full.id;
    store->append_timeline(note);
    message.record_id = full.id;
    ASSERT_TRUE(store->enqueue(message));
    entry.record_id = full.id;
    entry.id = store->append_journal(entry);
  }
  auto store = open_store();
  ASSERT_NE(store, nullptr);

  ASSERT_TRUE(store->record(full.id).has_value());
  expect_same_record(*store->record(full.id), full);
  ASSERT_TRUE(store->record(bare.id).has_value());
  expect_same_record(*store->record(bare.id), bare);
  EXPECT_FALSE(store->record(bare.id)->review_at.has_value());

  std::vector<TimelineEntry> timeline = store->timeline(full.id);
  ASSERT_EQ(timeline.size(), 2u);
  EXPECT_EQ(timeline[0].event, "opened");
  EXPECT_EQ(timeline[1].record_id, note.record_id);
  EXPECT_TRUE(timeline[1].at == note.at);
  EXPECT_EQ(timeline[1].event, note.event);
  EXPECT_EQ(timeline[1].actor, note.actor);
  EXPECT_EQ(timeline[1].detail, note.detail);

  std::vector<OutboxMessage> outbox = store->outbox(std::nullopt, 10);
  ASSERT_EQ(outbox.size(), 1u);
  const OutboxMessage& m = outbox[0];
  EXPECT_EQ(m.id, message.id);
  EXPECT_EQ(m.receiver, message.receiver);
  EXPECT_EQ(m.dedup_key, message.dedup_key);
  EXPECT_EQ(m.record_id, message.record_id);
  EXPECT_EQ(m.event, message.event);
  EXPECT_EQ(m.payload, message.payload);
  EXPECT_EQ(m.state, message.state);
  EXPECT_EQ(m.attempts, message.attempts);
  EXPECT_TRUE(m.created_at == message.created_at);
  EXPECT_TRUE(m.next_attempt_at == message.next_attempt_at);
  EXPECT_TRUE(m.delivered_at == message.delivered_at);
  EXPECT_EQ(m.last_error, message.last_error);

  std::vector<JournalEntry> journal = store->journal(10);
  ASSERT_EQ(journal.size(), 1u);
  const JournalEntry& j = journal[0];
  EXPECT_EQ(j.id, entry.id);
  EXPECT_EQ(j.task_id, entry.task_id);
  EXPECT_EQ(j.task_type, entry.task_type);
  EXPECT_EQ(j.primary_agent, entry.primary_agent);
  EXPECT_EQ(j.status, entry.status);
  EXPECT_EQ(j.answered_by, entry.answered_by);
  EXPECT_EQ(j.attempts, entry.attempts);
  EXPECT_EQ(j.record_id, entry.record_id);
  EXPECT_TRUE(j.started_at == entry.started_at);
  EXPECT_TRUE(j.finished_at == entry.finished_at);
  EXPECT_EQ(j.outcome_json, entry.outcome_json);
}

TEST_P(StoreRoundTripTest, TimesAreKeptToTheMillisecond) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  EscalationRecord r = a_record("fp");
  r.created_at = kT0 + std::chrono::microseconds(1999);  // 1.999 ms
  RecordUpsert u = store->open_or_touch(r, kT0);
  EXPECT_TRUE(u.record.created_at == kT0 + milliseconds(1));
  EXPECT_TRUE(store->record(u.record.id)->created_at == kT0 + milliseconds(1));
}

}  // namespace
}  // namespace mend
