#include "mend/core/bulkhead.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <thread>
#include <vector>

#include "mend/core/pipeline.h"
#include "mend_test/eventually.h"
#include "test_env.h"

namespace mend {
namespace {

using namespace mend::testing;

TEST(Bulkhead, AdmitsUpToItsCapacity) {
  Bulkhead b("db", {.max_concurrent = 2});
  EXPECT_TRUE(b.try_enter());
  EXPECT_TRUE(b.try_enter());
  EXPECT_FALSE(b.try_enter());
  EXPECT_EQ(b.in_use(), 2);
  EXPECT_EQ(b.enter({}), Bulkhead::Admission::queue_full);  // no queue by default
  b.leave();
  EXPECT_EQ(b.enter({}), Bulkhead::Admission::admitted);
}

TEST(Bulkhead, RefusalIsAResourceError) {
  Bulkhead b("db", {.max_concurrent = 1});
  Error e = b.rejection(Bulkhead::Admission::queue_full);
  EXPECT_EQ(e.type, ErrorType::connection_pool_exhausted);
  EXPECT_EQ(e.stop, StopReason::bulkhead_full);
  EXPECT_NE(e.message.find("bulkhead 'db' is full (1 in use, no waiting allowed)"),
            std::string::npos);
}

TEST(Bulkhead, RejectsInvalidOptions) {
  EXPECT_THROW(Bulkhead("x", {.max_concurrent = 0}), std::invalid_argument);
  EXPECT_THROW(Bulkhead("x", {.max_concurrent = 1, .max_queue = -1}), std::invalid_argument);
}

TEST(Bulkhead, WaitersAreAdmittedInArrivalOrderAndTheQueueIsBounded) {
  Bulkhead b("db", {.max_concurrent = 1, .max_queue = 2, .max_wait = std::chrono::minutes(5)});
  ASSERT_TRUE(b.try_enter());
  std::vector<int> order;
  std::mutex order_mu;
  auto waiter = [&](int id) {
    ASSERT_EQ(b.enter({}), Bulkhead::Admission::admitted);
    {
      std::lock_guard lock(order_mu);
      order.push_back(id);
    }
    b.leave();
  };
  std::thread first(waiter, 1);
  ASSERT_TRUE(eventually([&] { return b.waiting() == 1; }));
  std::thread second(waiter, 2);
  ASSERT_TRUE(eventually([&] { return b.waiting() == 2; }));
  // The queue is full: a third caller is refused at once, and nobody barges in.
  EXPECT_EQ(b.enter({}), Bulkhead::Admission::queue_full);
  EXPECT_FALSE(b.try_enter());
  b.leave();
  first.join();
  second.join();
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
  EXPECT_EQ(b.in_use(), 0);
  EXPECT_EQ(b.waiting(), 0);
}

TEST(Bulkhead, AStopRequestWakesAWaiter) {
  Bulkhead b("db", {.max_concurrent = 1, .max_queue = 1, .max_wait = std::chrono::minutes(5)});
  ASSERT_TRUE(b.try_enter());
  std::stop_source stop;
  Bulkhead::Admission result = Bulkhead::Admission::admitted;
  std::thread waiter([&] { result = b.enter(stop.get_token()); });
  ASSERT_TRUE(eventually([&] { return b.waiting() == 1; }));
  stop.request_stop();
  waiter.join();
  EXPECT_EQ(result, Bulkhead::Admission::cancelled);
  EXPECT_EQ(b.waiting(), 0);
  EXPECT_EQ(b.in_use(), 1);
}

TEST(Bulkhead, InAPipelineARefusalIsRetriedThenReported) {
  TestEnv t;
  auto bulkhead = std::make_shared<Bulkhead>("db", BulkheadOptions{.max_concurrent = 1});
  ASSERT_TRUE(bulkhead->try_enter());  // someone else holds the only slot
  Pipeline p = Pipeline::Builder().env(t.env()).retry({}).bulkhead(bulkhead).build();
  int calls = 0;
  try {
    p.execute([&] { return ++calls; });
    FAIL();
  } catch (const RetryExhaustedError& e) {
    EXPECT_EQ(e.last_error().type, ErrorType::connection_pool_exhausted);
    EXPECT_EQ(e.last_error().attempts.size(), 4u);
  }
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(t.events.count(EventKind::bulkhead_rejected), 4u);
  bulkhead->leave();
  EXPECT_EQ(p.execute([&] { return ++calls; }), 1);
  EXPECT_EQ(bulkhead->in_use(), 0);  // the pipeline left its slot
}

}  // namespace
}  // namespace mend
