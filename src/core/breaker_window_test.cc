#include "breaker_window.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <set>
#include <thread>
#include <vector>

namespace mend::detail {
namespace {

using std::chrono::seconds;

constexpr std::uint8_t kSuccess = kCall;
constexpr std::uint8_t kFailure = kCall | kFailed;

TimePoint at(Duration d) {
  return TimePoint(seconds(1'000'000) + d);
}

std::size_t shard_of_new_thread() {
  std::size_t shard = 0;
  std::thread([&] { shard = window_shard(); }).join();
  return shard;
}

TEST(WindowShard, ThreadsAliveAtOnceHoldDistinctShardsAndExitedThreadsGiveThemBack) {
  const std::size_t mine = window_shard();
  EXPECT_EQ(window_shard(), mine) << "a thread keeps its shard";
  // One thread after the other: each takes the lowest free index, which the last one gave back.
  const std::size_t first = shard_of_new_thread();
  EXPECT_NE(first, mine);
  EXPECT_EQ(shard_of_new_thread(), first);
  EXPECT_EQ(shard_of_new_thread(), first);

  // Eight threads at once: eight shards, none this thread's.
  constexpr int kThreads = 8;
  std::vector<std::size_t> shards(kThreads);
  std::vector<std::thread> threads;
  std::atomic<int> assigned{0};
  std::atomic<bool> done{false};
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      shards[static_cast<std::size_t>(i)] = window_shard();
      ++assigned;
      while (!done.load()) std::this_thread::yield();  // hold the index until all have one
    });
  }
  while (assigned.load() < kThreads) std::this_thread::yield();
  done = true;
  for (auto& t : threads) t.join();
  std::set<std::size_t> distinct(shards.begin(), shards.end());
  distinct.insert(mine);
  EXPECT_EQ(distinct.size(), static_cast<std::size_t>(kThreads + 1));
}

TEST(CountWindow, OneThreadIsExactAndSlides) {
  CountWindow w(4);
  auto call = [&](std::uint8_t outcome) {
    w.record(TimePoint{}, outcome);
    w.note(outcome);  // a no-op for a plain success, as the breaker does not call it then
  };
  call(kFailure);
  call(kSuccess);
  call(kCall | kSlow);
  WindowTotals t = w.totals(TimePoint{});
  EXPECT_EQ(t.calls, 3);
  EXPECT_EQ(t.failures, 1);
  EXPECT_EQ(t.slow, 1);
  call(kSuccess);
  call(kSuccess);  // the failure leaves the window
  t = w.totals(TimePoint{});
  EXPECT_EQ(t.calls, 4);
  EXPECT_EQ(t.failures, 0);
  EXPECT_EQ(t.slow, 1);
  for (int i = 0; i < 100; ++i) call(kSuccess);  // more than the window at once
  t = w.totals(TimePoint{});
  EXPECT_EQ(t.calls, 4);
  EXPECT_EQ(t.slow, 0);
  w.reset();
  EXPECT_EQ(w.totals(TimePoint{}).calls, 0);
  call(kFailure);
  t = w.totals(TimePoint{});
  EXPECT_EQ(t.calls, 1);
  EXPECT_EQ(t.failures, 1);
}

// Two calls counted before either failure is marked (two threads, interleaved): the second failure
// finds the last position taken and takes the one before it. The totals are those of the calls.
TEST(CountWindow, AFailureWhosePositionIsTakenTakesTheLatestFreeOne) {
  CountWindow w(10);
  w.record(TimePoint{}, kSuccess);
  w.record(TimePoint{}, kFailure);
  w.record(TimePoint{}, kFailure);
  w.note(kFailure);
  w.note(kFailure);
  WindowTotals t = w.totals(TimePoint{});
  EXPECT_EQ(t.calls, 3);
  EXPECT_EQ(t.failures, 2);
  // Ten more calls: all three have left the window, failures included.
  for (int i = 0; i < 10; ++i) w.record(TimePoint{}, kSuccess);
  t = w.totals(TimePoint{});
  EXPECT_EQ(t.calls, 10);
  EXPECT_EQ(t.failures, 0);
}

// A failure whose count was lost (two threads sharing a shard) and finds every position taken:
// it takes one more position rather than none, so failures never outnumber calls.
TEST(CountWindow, AFailureWithNoFreePositionTakesOneMore) {
  CountWindow w(1);
  w.record(TimePoint{}, kFailure);
  w.note(kFailure);
  w.note(kFailure);
  WindowTotals t = w.totals(TimePoint{});
  EXPECT_EQ(t.calls, 1);
  EXPECT_EQ(t.failures, 1);
}

TEST(TimeWindow, SumsTheShardsOverTheLastBuckets) {
  TimeWindow w(seconds(10), 10);
  std::thread([&] {
    w.record(at(seconds(0)), kFailure);
    w.record(at(seconds(5)), kSuccess);
  }).join();
  w.record(at(seconds(5)), kCall | kSlow);
  w.record(at(seconds(9)), kSuccess);
  WindowTotals t = w.totals(at(seconds(9)));
  EXPECT_EQ(t.calls, 4);
  EXPECT_EQ(t.failures, 1);
  EXPECT_EQ(t.slow, 1);
  t = w.totals(at(seconds(10)));  // the bucket of [0 s, 1 s) has left the window
  EXPECT_EQ(t.calls, 3);
  EXPECT_EQ(t.failures, 0);
  // This thread's slot of 5 s, reused ten periods later, starts afresh.
  w.record(at(seconds(15)), kSuccess);
  t = w.totals(at(seconds(15)));
  EXPECT_EQ(t.calls, 2);  // 9 s and 15 s
  EXPECT_EQ(t.slow, 0);
}

// The recording thread keeps its bucket's period to spare a division per call; a reset must
// still reach that bucket.
TEST(TimeWindow, ARecordAfterAResetStartsTheBucketAfresh) {
  TimeWindow w(seconds(10), 10);
  w.record(at(seconds(1)), kFailure);
  w.record(at(seconds(1)), kSuccess);
  w.reset();
  EXPECT_EQ(w.totals(at(seconds(1))).calls, 0);
  w.record(at(seconds(1)), kSuccess);
  const WindowTotals t = w.totals(at(seconds(1)));
  EXPECT_EQ(t.calls, 1);
  EXPECT_EQ(t.failures, 0);
}

}  // namespace
}  // namespace mend::detail
