// Every store's notification outbox: deduplicated enqueue, due messages, retries,
// burial and delivery, and the claims under a lease with a fencing number (two PostgreSQL nodes
// claiming at once never share a message).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <thread>
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

  // Never claimed: fence 0.
  EXPECT_TRUE(store->mark_failed(retried.id, 0, 1, kT0 + seconds(30), "HTTP 503", false));
  EXPECT_TRUE(store->mark_failed(doomed.id, 0, 5, kT0 + seconds(30), "HTTP 404", /*dead=*/true));
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

  EXPECT_TRUE(store->mark_delivered(retried.id, 0, kT0 + seconds(31)));
  EXPECT_TRUE(store->due_messages(kT0 + hours(1), 10).empty());
  std::vector<OutboxMessage> delivered = store->outbox(OutboxState::delivered, 10);
  ASSERT_EQ(ids_of(delivered), (std::vector<std::int64_t>{retried.id}));
  EXPECT_EQ(delivered[0].attempts, 2);
  EXPECT_TRUE(delivered[0].delivered_at == kT0 + seconds(31));
  EXPECT_EQ(delivered[0].last_error, "HTTP 503");

  EXPECT_FALSE(store->mark_delivered(12345, 0, kT0));  // unknown: ignored
  EXPECT_FALSE(store->mark_failed(12345, 0, 1, kT0, "x", false));
  EXPECT_EQ(store->outbox(std::nullopt, 10).size(), 2u);
}

TEST_P(StoreOutboxTest, ClaimLeasesDueMessagesToTheOwnerWithAFence) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  OutboxMessage late = a_message("slack", "a", kT0 + seconds(2));
  OutboxMessage early = a_message("slack", "b", kT0 + seconds(1));
  OutboxMessage future = a_message("slack", "c", kT0 + hours(1));
  ASSERT_TRUE(store->enqueue(late));
  ASSERT_TRUE(store->enqueue(early));
  ASSERT_TRUE(store->enqueue(future));

  const WallTime now = kT0 + seconds(5);
  std::vector<OutboxMessage> claimed = store->claim_due(now, 10, "node-a", seconds(15));
  ASSERT_EQ(ids_of(claimed), (std::vector<std::int64_t>{early.id, late.id}));  // oldest first
  for (const OutboxMessage& m : claimed) {
    EXPECT_EQ(m.lease_owner, "node-a");
    EXPECT_TRUE(m.lease_until == now + seconds(15));
    EXPECT_EQ(m.fence, 1);
    EXPECT_EQ(m.state, OutboxState::pending);
  }
  // The listing shows the lease too.
  std::vector<OutboxMessage> listed = store->outbox(OutboxState::pending, 10);
  ASSERT_EQ(listed.size(), 3u);
  EXPECT_EQ(listed[0].lease_owner, "node-a");
  EXPECT_EQ(listed[2].lease_owner, "");
  EXPECT_EQ(listed[2].fence, 0);

  // The limit holds; the owner's own leased rows are claimable again (a new fence).
  std::vector<OutboxMessage> again = store->claim_due(now, 1, "node-a", seconds(15));
  ASSERT_EQ(ids_of(again), (std::vector<std::int64_t>{early.id}));
  EXPECT_EQ(again[0].fence, 2);

  // A completion with the current fence clears the lease.
  EXPECT_TRUE(store->mark_delivered(early.id, 2, now));
  EXPECT_TRUE(store->mark_failed(late.id, 1, 1, now + seconds(30), "HTTP 503", false));
  std::vector<OutboxMessage> all = store->outbox(std::nullopt, 10);
  ASSERT_EQ(all.size(), 3u);
  for (const OutboxMessage& m : all) {
    EXPECT_EQ(m.lease_owner, "");
    EXPECT_TRUE(m.lease_until == WallTime{});
  }
  EXPECT_TRUE(store->claim_due(now, 10, "node-a", seconds(15)).empty());  // none due now
}

TEST_P(StoreOutboxTest, AnotherOwnerTakesALeaseOnlyOnceItExpiredAndTheStaleFenceIsRefused) {
  auto store = open_store();
  ASSERT_NE(store, nullptr);
  auto other_node = open_store();  // another connection on the same database, as another node
  ASSERT_NE(other_node, nullptr);
  OutboxMessage m = a_message("slack", "a", kT0);
  OutboxMessage free_one = a_message("slack", "b", kT0);
  ASSERT_TRUE(store->enqueue(m));

  std::vector<OutboxMessage> a = store->claim_due(kT0, 10, "node-a", seconds(15));
  ASSERT_EQ(ids_of(a), (std::vector<std::int64_t>{m.id}));
  ASSERT_TRUE(store->enqueue(free_one));

  // Under node-a's lease: node-b skips it (and takes what is free), up to the last millisecond.
  std::vector<OutboxMessage> b =
      other_node->claim_due(kT0 + seconds(14), 10, "node-b", seconds(15));
  EXPECT_EQ(ids_of(b), (std::vector<std::int64_t>{free_one.id}));
  EXPECT_TRUE(
      other_node
          ->claim_due(kT0 + seconds(15) - std::chrono::milliseconds(1), 10, "node-c", seconds(15))
          .empty());

  // Expired (lease_until <= now): node-c takes it with a higher fence.
  std::vector<OutboxMessage> c = other_node->claim_due(kT0 + seconds(15), 1, "node-c", seconds(15));
  ASSERT_EQ(ids_of(c), (std::vector<std::int64_t>{m.id}));
  EXPECT_GT(c[0].fence, a[0].fence);
  EXPECT_EQ(c[0].lease_owner, "node-c");

  // node-a, late, completes with its stale fence: refused, nothing changed.
  EXPECT_FALSE(store->mark_delivered(m.id, a[0].fence, kT0 + seconds(16)));
  EXPECT_FALSE(store->mark_failed(m.id, a[0].fence, 3, kT0 + hours(1), "late", true));
  std::vector<OutboxMessage> pending = store->outbox(OutboxState::pending, 10);
  ASSERT_EQ(pending.size(), 2u);
  EXPECT_EQ(pending[0].id, m.id);
  EXPECT_EQ(pending[0].lease_owner, "node-c");
  EXPECT_EQ(pending[0].fence, c[0].fence);
  EXPECT_EQ(pending[0].attempts, 0);
  EXPECT_EQ(pending[0].last_error, "");

  // The new owner's completion works, once.
  EXPECT_TRUE(other_node->mark_delivered(m.id, c[0].fence, kT0 + seconds(17)));
  EXPECT_FALSE(other_node->mark_delivered(m.id, c[0].fence, kT0 + seconds(18)));
  std::vector<OutboxMessage> delivered = store->outbox(OutboxState::delivered, 10);
  ASSERT_EQ(ids_of(delivered), (std::vector<std::int64_t>{m.id}));
  EXPECT_TRUE(delivered[0].delivered_at == kT0 + seconds(17));
  EXPECT_EQ(delivered[0].attempts, 1);
  // Delivered messages are never claimed again.
  EXPECT_EQ(ids_of(store->claim_due(kT0 + hours(2), 10, "node-a", seconds(15))),
            (std::vector<std::int64_t>{free_one.id}));
}

TEST_P(StoreOutboxTest, TwoNodesClaimingConcurrentlyNeverClaimTheSameMessage) {
  if (GetParam() != store_test_support::Backend::postgresql) {
    GTEST_SKIP() << "one process per SQLite file: the concurrent claim is PostgreSQL's";
  }
  auto setup = open_store();
  ASSERT_NE(setup, nullptr);
  constexpr int kMessages = 200;
  for (int i = 0; i < kMessages; ++i) {
    OutboxMessage m = a_message("slack", "m" + std::to_string(i), kT0);
    ASSERT_TRUE(setup->enqueue(m));
  }
  auto node_a = open_store();
  auto node_b = open_store();
  ASSERT_NE(node_a, nullptr);
  ASSERT_NE(node_b, nullptr);

  // Each node claims batches of 10 and "delivers" every message it claimed (the lease, 1 h,
  // holds throughout), counting its deliveries.
  std::mutex mu;
  std::map<std::int64_t, int> claims;
  std::map<std::int64_t, int> deliveries;
  std::atomic<int> failures{0};
  auto run_node = [&](Store& node, const std::string& owner) {
    for (;;) {
      std::vector<OutboxMessage> batch = node.claim_due(kT0 + seconds(1), 10, owner, hours(1));
      if (batch.empty()) return;
      for (const OutboxMessage& m : batch) {
        {
          std::lock_guard lock(mu);
          ++claims[m.id];
        }
        if (m.lease_owner != owner || m.fence != 1) ++failures;
        if (node.mark_delivered(m.id, m.fence, kT0 + seconds(2))) {
          std::lock_guard lock(mu);
          ++deliveries[m.id];
        } else {
          ++failures;
        }
      }
    }
  };
  std::thread a([&] { run_node(*node_a, "node-a"); });
  std::thread b([&] { run_node(*node_b, "node-b"); });
  a.join();
  b.join();

  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(claims.size(), static_cast<std::size_t>(kMessages));
  EXPECT_EQ(deliveries.size(), static_cast<std::size_t>(kMessages));
  for (const auto& [id, n] : claims) EXPECT_EQ(n, 1) << "message " << id << " claimed " << n;
  for (const auto& [id, n] : deliveries) EXPECT_EQ(n, 1) << "message " << id;
  EXPECT_EQ(setup->outbox(OutboxState::delivered, 1000).size(),
            static_cast<std::size_t>(kMessages));
  EXPECT_TRUE(setup->outbox(OutboxState::pending, 1000).empty());
}

TEST_P(StoreOutboxTest, OutboxStateNamesAreStable) {
  EXPECT_EQ(to_string(OutboxState::pending), "pending");
  EXPECT_EQ(to_string(OutboxState::delivered), "delivered");
  EXPECT_EQ(to_string(OutboxState::dead), "dead");
}

}  // namespace
}  // namespace mend
