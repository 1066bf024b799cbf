// Every store's notification outbox: deduplicated enqueue, due messages, retries,
// burial and delivery.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "store_conformance_test_support.h"

namespace mend {
namespace {

using std::chrono::hours;
using std::chrono::seconds;
using store_test_support::a_message;
using store_test_support::ids_of;
using store_test_support::kT0;
using store_test_support::StoreTest;

using StoreOutboxTest = StoreTest;
INSTANTIATE_TEST_SUITE_P(Stores, StoreOutboxTest, store_test_support::kEveryStore,
                         store_test_support::store_name);

TEST_P(StoreOutboxTest, EnqueueIsANoOpForADuplicateReceiverAndDedupKey) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  OutboxMessage first = a_message("slack", "TKT-1/trigger", kT0);
  ASSERT_TRUE(store->enqueue(first));
  EXPECT_GT(first.id, 0);

  OutboxMessage duplicate = a_message("slack", "TKT-1/trigger", kT0 + hours(1));
  duplicate.payload = "different";
  EXPECT_FALSE(store->enqueue(duplicate));
  EXPECT_EQ(duplicate.id, 0);

  OutboxMessage other_receiver = a_message("pagerduty", "TKT-1/trigger", kT0);
  EXPECT_TRUE(store->enqueue(other_receiver));
  EXPECT_NE(other_receiver.id, first.id);

  std::vector<OutboxMessage> all = store->outbox(std::nullopt, 10);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].payload, first.payload);  // the first one was kept as it was
}

TEST_P(StoreOutboxTest, DueMessagesArePendingOnesDueByNowOldestFirst) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  auto add = [&](std::string key, WallTime next, OutboxState state = OutboxState::pending) {
    OutboxMessage m = a_message("slack", std::move(key), next);
    m.state = state;
    EXPECT_TRUE(store->enqueue(m));
    return m.id;
  };
  const std::int64_t at3 = add("a", kT0 + seconds(3));
  const std::int64_t at1 = add("b", kT0 + seconds(1));
  const std::int64_t at1_later_id = add("c", kT0 + seconds(1));
  const std::int64_t at5 = add("d", kT0 + seconds(5));  // due exactly at now
  add("e", kT0 + seconds(6));                           // not yet
  add("f", kT0, OutboxState::delivered);
  add("g", kT0, OutboxState::dead);

  const WallTime now = kT0 + seconds(5);
  EXPECT_EQ(ids_of(store->due_messages(now, 10)),
            (std::vector<std::int64_t>{at1, at1_later_id, at3, at5}));
  EXPECT_EQ(ids_of(store->due_messages(now, 2)), (std::vector<std::int64_t>{at1, at1_later_id}));
  EXPECT_TRUE(store->due_messages(kT0, 10).empty());
  EXPECT_EQ(store->outbox(OutboxState::pending, 10).size(), 5u);
  EXPECT_EQ(store->outbox(OutboxState::delivered, 10).size(), 1u);
  EXPECT_EQ(store->outbox(OutboxState::dead, 10).size(), 1u);
  EXPECT_EQ(store->outbox(std::nullopt, 3).size(), 3u);
}

TEST_P(StoreOutboxTest, MarkFailedReschedulesOrBuriesAndMarkDeliveredCompletes) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  OutboxMessage retried = a_message("slack", "a", kT0);
  OutboxMessage doomed = a_message("slack", "b", kT0);
  ASSERT_TRUE(store->enqueue(retried));
  ASSERT_TRUE(store->enqueue(doomed));

  store->mark_failed(retried.id, 1, kT0 + seconds(30), "HTTP 503", /*dead=*/false);
  store->mark_failed(doomed.id, 5, kT0 + seconds(30), "HTTP 404", /*dead=*/true);
  EXPECT_TRUE(store->due_messages(kT0 + seconds(29), 10).empty());
  std::vector<OutboxMessage> due = store->due_messages(kT0 + seconds(30), 10);
  ASSERT_EQ(ids_of(due), (std::vector<std::int64_t>{retried.id}));
  EXPECT_EQ(due[0].attempts, 1);
  EXPECT_EQ(due[0].last_error, "HTTP 503");
  EXPECT_EQ(due[0].state, OutboxState::pending);
  EXPECT_FALSE(due[0].delivered_at.has_value());

  std::vector<OutboxMessage> dead = store->outbox(OutboxState::dead, 10);
  ASSERT_EQ(ids_of(dead), (std::vector<std::int64_t>{doomed.id}));
  EXPECT_EQ(dead[0].attempts, 5);
  EXPECT_EQ(dead[0].last_error, "HTTP 404");

  store->mark_delivered(retried.id, kT0 + seconds(31));
  EXPECT_TRUE(store->due_messages(kT0 + hours(1), 10).empty());
  std::vector<OutboxMessage> delivered = store->outbox(OutboxState::delivered, 10);
  ASSERT_EQ(ids_of(delivered), (std::vector<std::int64_t>{retried.id}));
  EXPECT_EQ(delivered[0].attempts, 2);
  EXPECT_TRUE(delivered[0].delivered_at == kT0 + seconds(31));
  EXPECT_EQ(delivered[0].last_error, "HTTP 503");

  store->mark_delivered(12345, kT0);  // unknown: ignored
  store->mark_failed(12345, 1, kT0, "x", false);
  EXPECT_EQ(store->outbox(std::nullopt, 10).size(), 2u);
}

TEST_P(StoreOutboxTest, OutboxStateNamesAreStable) {
  EXPECT_EQ(to_string(OutboxState::pending), "pending");
  EXPECT_EQ(to_string(OutboxState::delivered), "delivered");
  EXPECT_EQ(to_string(OutboxState::dead), "dead");
}

}  // namespace
}  // namespace mend
