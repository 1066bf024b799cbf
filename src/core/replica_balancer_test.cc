// The replica balancer on a manual clock and seeded random sources: power of two choices by
// calls outstanding, previous-hosts exclusion, and outlier ejection (consecutive failures, the
// failure share of a window, growing ejection times, the cap on how many may be out at once).
#include "mend/core/replica_balancer.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <stdexcept>
#include <vector>

#include "mend/core/agents.h"
#include "mend/core/attempt_policy.h"
#include "test_env.h"

namespace mend {
namespace {

using namespace mend::testing;
using R = ReplicaCallResult;

// CountingRandom (test_env.h) counts draws: picking among one or two replicas must draw nothing (a
// one-replica agent's retry jitter is what it was before the balancer).

class ReplicaBalancerTest : public ::testing::Test {
 protected:
  // A call made and answered at once on `replica` (the others avoided, so the pick is it unless
  // it is ejected): what it was actually sent to.
  int call(ReplicaBalancer& balancer, int replica, R result) {
    std::vector<int> others;
    for (int i = 0; i < balancer.replicas(); ++i) {
      if (i != replica) others.push_back(i);
    }
    const int picked = balancer.pick(clock.now(), random, others);
    balancer.report(picked, result, clock.now(), milliseconds(10));
    return picked;
  }
  void fail(ReplicaBalancer& balancer, int replica, int times) {
    for (int i = 0; i < times; ++i) ASSERT_EQ(call(balancer, replica, R::failed), replica) << i;
  }
  bool ejected(const ReplicaBalancer& balancer, int replica) {
    return balancer.snapshot(clock.now()).at(static_cast<std::size_t>(replica)).ejected;
  }

  ManualClock clock;
  CountingRandom random{42};
};

TEST_F(ReplicaBalancerTest, OneReplicaTakesEveryCallAndIsNeverEjected) {
  ReplicaBalancer one(1, {});
  EXPECT_EQ(one.max_ejected(), 0);
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(one.pick(clock.now(), random), 0);
    one.report(0, R::failed, clock.now(), milliseconds(5));
  }
  EXPECT_FALSE(ejected(one, 0));
  EXPECT_EQ(one.snapshot(clock.now())[0].failures, 100u);
  EXPECT_EQ(random.draws, 0);
}

TEST_F(ReplicaBalancerTest, TwoHealthyReplicasShareCallsMadeOneAfterAnother) {
  ReplicaBalancer two(2, {});
  int calls[2] = {0, 0};
  std::vector<int> order;
  for (int i = 0; i < 200; ++i) {
    const int r = two.pick(clock.now(), random);
    ++calls[r];
    if (i < 4) order.push_back(r);
    two.report(r, R::succeeded, clock.now(), milliseconds(5));
  }
  // None outstanding at each pick: the tie goes round, starting at replica 0.
  EXPECT_EQ(order, (std::vector<int>{0, 1, 0, 1}));
  EXPECT_EQ(calls[0], 100);
  EXPECT_EQ(calls[1], 100);
  EXPECT_EQ(random.draws, 0);  // both replicas are the two choices: nothing to draw
}

TEST_F(ReplicaBalancerTest, PrefersTheReplicaWithFewerCallsOutstanding) {
  ReplicaBalancer two(2, {});
  const int slow = two.pick(clock.now(), random);  // never answers during the test
  EXPECT_EQ(slow, 0);
  for (int i = 0; i < 20; ++i) {
    const int r = two.pick(clock.now(), random);
    EXPECT_EQ(r, 1) << i;
    two.report(r, R::succeeded, clock.now(), milliseconds(5));
  }
  EXPECT_EQ(two.snapshot(clock.now())[0].outstanding, 1);
  two.report(slow, R::succeeded, clock.now(), seconds(3));
  EXPECT_EQ(two.snapshot(clock.now())[0].outstanding, 0);
  // Even again: the next two calls go one to each.
  const int a = two.pick(clock.now(), random);
  const int b = two.pick(clock.now(), random);
  EXPECT_NE(a, b);
}

TEST_F(ReplicaBalancerTest, ManyReplicasSpreadEvenlyAndTheBusyOneIsPassedOver) {
  ReplicaBalancer four(4, {});
  int calls[4] = {0, 0, 0, 0};
  for (int i = 0; i < 4000; ++i) {
    const int r = four.pick(clock.now(), random);
    ++calls[r];
    four.report(r, R::succeeded, clock.now(), milliseconds(5));
  }
  for (int r = 0; r < 4; ++r) EXPECT_NEAR(calls[r], 1000, 150) << r;
  EXPECT_EQ(random.draws, 2 * 4000);  // two distinct choices per pick

  // Replica 3 holds five calls that do not answer: of any two choices it is the busier one.
  ReplicaBalancer busy(4, {});
  std::vector<int> held;
  while (held.size() < 5) {
    const int r = busy.pick(clock.now(), random, std::vector<int>{0, 1, 2});
    ASSERT_EQ(r, 3);
    held.push_back(r);
  }
  int to_busy = 0;
  for (int i = 0; i < 300; ++i) {
    const int r = busy.pick(clock.now(), random);
    to_busy += r == 3 ? 1 : 0;
    busy.report(r, R::succeeded, clock.now(), milliseconds(5));
  }
  EXPECT_EQ(to_busy, 0);
}

TEST_F(ReplicaBalancerTest, ConsecutiveFailuresEjectForTheBaseTimeThenItReturns) {
  ReplicaBalancer two(2, {});
  fail(two, 0, 4);
  EXPECT_FALSE(ejected(two, 0));
  fail(two, 0, 1);  // the fifth in a row
  ASSERT_TRUE(ejected(two, 0));
  EXPECT_EQ(two.snapshot(clock.now())[0].ejected_until, clock.now() + seconds(30));
  // Ejected: every call goes to replica 1, even one that would rather avoid it.
  for (int i = 0; i < 10; ++i) EXPECT_EQ(call(two, 0, R::succeeded), 1) << i;
  clock.advance(seconds(30) - milliseconds(1));
  EXPECT_TRUE(ejected(two, 0));
  clock.advance(milliseconds(1));
  EXPECT_FALSE(ejected(two, 0));
  EXPECT_EQ(call(two, 0, R::succeeded), 0);  // back, its counts afresh
  EXPECT_EQ(two.snapshot(clock.now())[0].consecutive_failures, 0);
}

TEST_F(ReplicaBalancerTest, ASuccessBreaksTheRun) {
  ReplicaBalancer two(2, {});
  fail(two, 0, 4);
  call(two, 0, R::succeeded);
  fail(two, 0, 4);
  EXPECT_FALSE(ejected(two, 0));
  fail(two, 0, 1);
  EXPECT_TRUE(ejected(two, 0));
}

TEST_F(ReplicaBalancerTest, RepeatedEjectionsLastLongerUpToTheCap) {
  ReplicaBalancer two(2, {});
  std::vector<int> seconds_out;
  for (int i = 0; i < 12; ++i) {
    fail(two, 0, 5);
    const ReplicaSnapshot s = two.snapshot(clock.now())[0];
    ASSERT_TRUE(s.ejected) << i;
    seconds_out.push_back(static_cast<int>(
        std::chrono::duration_cast<seconds>(s.ejected_until - clock.now()).count()));
    clock.advance(s.ejected_until - clock.now());  // back, and failing again at once
  }
  EXPECT_EQ(seconds_out,
            (std::vector<int>{30, 60, 90, 120, 150, 180, 210, 240, 270, 300, 300, 300}));
  EXPECT_EQ(two.snapshot(clock.now())[0].ejections, 12u);
}

TEST_F(ReplicaBalancerTest, TimeBackInServiceBringsTheEjectionTimeDown) {
  ReplicaBalancer two(2, {});
  fail(two, 0, 5);
  clock.advance(seconds(30));
  fail(two, 0, 5);  // 60 s
  EXPECT_EQ(two.snapshot(clock.now())[0].ejection_multiplier, 2);
  clock.advance(seconds(60));
  // Two base ejection times of good service take it two steps down: the next is 30 s again.
  for (int i = 0; i < 6; ++i) {
    call(two, 0, R::succeeded);
    clock.advance(seconds(10));
  }
  fail(two, 0, 5);
  const ReplicaSnapshot s = two.snapshot(clock.now())[0];
  EXPECT_EQ(s.ejection_multiplier, 1);
  EXPECT_EQ(s.ejected_until, clock.now() + seconds(30));
}

TEST_F(ReplicaBalancerTest, AFailureShareOverTheWindowEjects) {
  ReplicaBalancer two(2, {});
  // Every other call fails: never five in a row, but half of ten.
  for (int i = 0; i < 9; ++i) call(two, 0, i % 2 == 0 ? R::succeeded : R::failed);
  EXPECT_FALSE(ejected(two, 0));
  EXPECT_EQ(two.snapshot(clock.now())[0].window_calls, 9);
  call(two, 0, R::failed);  // 5 of 10
  EXPECT_TRUE(ejected(two, 0));

  // One in three fails: under the threshold, never ejected.
  ReplicaBalancer fine(2, {});
  for (int i = 0; i < 60; ++i) call(fine, 0, i % 3 == 2 ? R::failed : R::succeeded);
  EXPECT_FALSE(ejected(fine, 0));
}

TEST_F(ReplicaBalancerTest, TheFailureShareIsOfOneWindow) {
  ReplicaBalancer two(2, {});
  for (int i = 0; i < 9; ++i) call(two, 0, i % 2 == 0 ? R::succeeded : R::failed);
  clock.advance(seconds(60));  // the window is over: the next call starts a new one
  call(two, 0, R::failed);
  EXPECT_FALSE(ejected(two, 0));
  EXPECT_EQ(two.snapshot(clock.now())[0].window_calls, 1);

  ReplicaBalancerOptions by_share_only;
  by_share_only.consecutive_failures = 0;
  ReplicaBalancer shares(2, by_share_only);
  fail(shares, 0, 9);
  EXPECT_FALSE(ejected(shares, 0));  // not enough calls yet
  fail(shares, 0, 1);
  EXPECT_TRUE(ejected(shares, 0));
}

TEST_F(ReplicaBalancerTest, AtMostHalfTheReplicasAreEjectedAndNeverAll) {
  ReplicaBalancer two(2, {});
  EXPECT_EQ(two.max_ejected(), 1);
  fail(two, 0, 5);
  EXPECT_TRUE(ejected(two, 0));
  // Replica 1 fails as much: it stays, since the agent would be empty without it.
  for (int i = 0; i < 5; ++i) EXPECT_EQ(two.pick(clock.now(), random), 1);
  for (int i = 0; i < 5; ++i) two.report(1, R::failed, clock.now(), milliseconds(5));
  EXPECT_FALSE(ejected(two, 1));
  EXPECT_EQ(two.snapshot(clock.now())[1].consecutive_failures, 0);  // counting afresh
  // Once replica 0 is back, replica 1's next five failures eject it.
  clock.advance(seconds(30));
  fail(two, 1, 5);
  EXPECT_TRUE(ejected(two, 1));
  EXPECT_FALSE(ejected(two, 0));

  EXPECT_EQ(ReplicaBalancer(3, {}).max_ejected(), 1);
  EXPECT_EQ(ReplicaBalancer(4, {}).max_ejected(), 2);
  ReplicaBalancerOptions all;
  all.max_ejection_percent = 100;
  EXPECT_EQ(ReplicaBalancer(4, all).max_ejected(), 3);
  ReplicaBalancerOptions none;
  none.max_ejection_percent = 0;
  ReplicaBalancer never(2, none);
  fail(never, 0, 20);
  EXPECT_FALSE(ejected(never, 0));
}

TEST_F(ReplicaBalancerTest, AReplicaItsProbeTookOutTakesNoCallWhileAnotherServes) {
  ReplicaBalancer three(3, {});
  three.set_ready(1, false);
  EXPECT_FALSE(three.snapshot(clock.now())[1].ready);
  std::vector<int> calls(3);
  for (int i = 0; i < 60; ++i) {
    const int r = three.pick(clock.now(), random);
    ++calls[static_cast<std::size_t>(r)];
    three.report(r, R::succeeded, clock.now(), milliseconds(5));
  }
  EXPECT_EQ(calls[1], 0);
  EXPECT_EQ(calls[0] + calls[2], 60);
  EXPECT_GT(calls[0], 0);
  EXPECT_GT(calls[2], 0);
  // Not a place for a task to move to either.
  const std::vector<int> failed_on{0, 2};
  EXPECT_FALSE(three.has_untried(clock.now(), failed_on));
  // Its probe taking it out is not an ejection: the detector may still take one more out.
  fail(three, 0, 5);
  EXPECT_TRUE(ejected(three, 0));
  EXPECT_FALSE(ejected(three, 1));
  for (int i = 0; i < 10; ++i) {
    const int r = three.pick(clock.now(), random);
    EXPECT_EQ(r, 2) << i;
    three.report(r, R::succeeded, clock.now(), milliseconds(5));
  }
  // Ready again: it takes its share at once.
  three.set_ready(1, true);
  std::vector<int> after(3);
  for (int i = 0; i < 20; ++i) {
    const int r = three.pick(clock.now(), random);
    ++after[static_cast<std::size_t>(r)];
    three.report(r, R::succeeded, clock.now(), milliseconds(5));
  }
  EXPECT_EQ(after[0], 0);  // still ejected
  EXPECT_GT(after[1], 0);
  EXPECT_GT(after[2], 0);
}

TEST_F(ReplicaBalancerTest, WithNoReplicaInServiceAReadyOneIsPickedThenAnyOne) {
  ReplicaBalancer two(2, {});
  two.set_ready(1, false);
  fail(two, 0, 5);  // ejected: no replica is in service
  ASSERT_TRUE(ejected(two, 0));
  // The ready one, ejected as it is, before the one its probe took out.
  for (int i = 0; i < 5; ++i) {
    const int r = two.pick(clock.now(), random);
    EXPECT_EQ(r, 0) << i;
    two.report(r, R::succeeded, clock.now(), milliseconds(5));
  }
  // Every probe failing (at start, say, before the first probe of a supervised agent answers):
  // the calls go on, to every replica in turn, rather than nowhere.
  ReplicaBalancer starting(2, {});
  starting.set_ready(0, false);
  starting.set_ready(1, false);
  std::vector<int> calls(2);
  for (int i = 0; i < 10; ++i) {
    const int r = starting.pick(clock.now(), random);
    ++calls[static_cast<std::size_t>(r)];
    starting.report(r, R::succeeded, clock.now(), milliseconds(5));
  }
  EXPECT_EQ(calls[0], 5);
  EXPECT_EQ(calls[1], 5);
  starting.set_ready(7, false);  // out of range: nothing
  starting.set_ready(-1, false);
}

TEST_F(ReplicaBalancerTest, ABalancerThatContinuesAnotherKeepsEachReplicasState) {
  ReplicaBalancer two(2, {});
  fail(two, 1, 5);
  ASSERT_TRUE(ejected(two, 1));
  two.set_ready(0, false);
  const int out = two.pick(clock.now(), random);  // outstanding: reports to `two`
  // A third replica joins at index 0; the old 0 and 1 are now 1 and 2.
  ReplicaBalancer three(3, {});
  const std::vector<int> before_index{-1, 0, 1};
  three.continue_from(two, before_index);
  const std::vector<ReplicaSnapshot> s = three.snapshot(clock.now());
  EXPECT_TRUE(s[0].ready);
  EXPECT_FALSE(s[0].ejected);
  EXPECT_EQ(s[0].calls, 0u);
  EXPECT_FALSE(s[1].ready);
  EXPECT_EQ(s[1].outstanding, 0);
  EXPECT_TRUE(s[2].ejected);
  EXPECT_EQ(s[2].ejected_until, two.snapshot(clock.now())[1].ejected_until);
  EXPECT_EQ(s[2].ejections, 1u);
  EXPECT_EQ(s[2].failures, 5u);
  two.report(out, R::succeeded, clock.now(), milliseconds(5));
  // The new one and the one in service take the calls; the ejected one still sits out.
  for (int i = 0; i < 10; ++i) {
    const int r = three.pick(clock.now(), random);
    EXPECT_EQ(r, 0) << i;
    three.report(r, R::succeeded, clock.now(), milliseconds(5));
  }
  // Its ejection ends when it would have.
  clock.advance(seconds(30));
  EXPECT_FALSE(three.snapshot(clock.now())[2].ejected);
  // A shorter map leaves the rest afresh; itself is nothing.
  ReplicaBalancer fresh(2, {});
  fresh.continue_from(two, std::vector<int>{1});
  EXPECT_EQ(fresh.snapshot(clock.now())[0].failures, 5u);
  EXPECT_EQ(fresh.snapshot(clock.now())[1].calls, 0u);
  fresh.continue_from(fresh, std::vector<int>{1, 0});
  EXPECT_EQ(fresh.snapshot(clock.now())[0].failures, 5u);
}

TEST_F(ReplicaBalancerTest, ATasksRetryAvoidsTheReplicasItFailedOn) {
  ReplicaBalancer three(3, {});
  const std::vector<int> failed_on{0, 1};
  for (int i = 0; i < 20; ++i) {
    const int r = three.pick(clock.now(), random, failed_on);
    EXPECT_EQ(r, 2) << i;
    three.report(r, R::succeeded, clock.now(), milliseconds(5));
  }
  EXPECT_TRUE(three.has_untried(clock.now(), failed_on));
  // Failed on all of them: any replica will do, rather than none.
  const std::vector<int> all{0, 1, 2};
  EXPECT_FALSE(three.has_untried(clock.now(), all));
  const int r = three.pick(clock.now(), random, all);
  EXPECT_TRUE(r >= 0 && r < 3);
  three.report(r, R::succeeded, clock.now(), milliseconds(5));
  // An ejected replica is not a place to go, even untried.
  fail(three, 2, 5);
  ASSERT_TRUE(ejected(three, 2));
  EXPECT_FALSE(three.has_untried(clock.now(), failed_on));
  for (int i = 0; i < 10; ++i) {
    const int again = three.pick(clock.now(), random, failed_on);
    EXPECT_NE(again, 2) << i;
    three.report(again, R::succeeded, clock.now(), milliseconds(5));
  }
}

TEST_F(ReplicaBalancerTest, WhichErrorsCountAgainstAReplica) {
  auto typed = [](ErrorType type) {
    return Error::classified_as(type, default_severity(type), "x");
  };
  EXPECT_EQ(ReplicaBalancer::result_of(
                Error::classified_as(ErrorType::temporary_unavailable, Severity::medium, "503")),
            R::failed);
  for (ErrorType t : {ErrorType::network_timeout, ErrorType::connection_reset,
                      ErrorType::memory_exhausted, ErrorType::connection_pool_exhausted,
                      ErrorType::service_unavailable, ErrorType::database_error}) {
    EXPECT_EQ(ReplicaBalancer::result_of(typed(t)), R::failed) << to_string(t);
  }
  // The replica answered: the task's fault, a service behind it, or a request to slow down.
  for (ErrorType t :
       {ErrorType::rate_limit_exceeded, ErrorType::validation_failed, ErrorType::processing_failed,
        ErrorType::external_service_down, ErrorType::authentication_failed}) {
    EXPECT_EQ(ReplicaBalancer::result_of(typed(t)), R::succeeded) << to_string(t);
  }
  // The call never left.
  Error refused = typed(ErrorType::connection_pool_exhausted);
  refused.stop = StopReason::bulkhead_full;
  ASSERT_TRUE(AttemptPolicy::refused_locally(refused));
  EXPECT_EQ(ReplicaBalancer::result_of(refused), R::ignored);
}

TEST_F(ReplicaBalancerTest, AFiveHundredFromAReplicaCountsAgainstIt) {
  // A bare 500 is processing_failed (category logic, the task's fault by its type); from one
  // replica while others answer it is that replica's, as Envoy's consecutive_5xx counts it.
  auto with_status = [](ErrorType type, int status) {
    Error e = Error::classified_as(type, Severity::medium, "x");
    e.status = status;
    return e;
  };
  EXPECT_EQ(ReplicaBalancer::result_of(with_status(ErrorType::processing_failed, 500)), R::failed);
  EXPECT_EQ(ReplicaBalancer::result_of(with_status(ErrorType::external_service_down, 502)),
            R::failed);
  // Not implemented, and an HTTP version it does not speak: the request's own fault.
  EXPECT_EQ(ReplicaBalancer::result_of(with_status(ErrorType::processing_failed, 501)),
            R::succeeded);
  EXPECT_EQ(ReplicaBalancer::result_of(with_status(ErrorType::processing_failed, 505)),
            R::succeeded);
  EXPECT_EQ(ReplicaBalancer::result_of(with_status(ErrorType::validation_failed, 400)),
            R::succeeded);

  ReplicaBalancer two(2, {});
  for (int i = 0; i < 5; ++i) {
    const int r = two.pick(clock.now(), random, std::vector<int>{1});
    ASSERT_EQ(r, 0);
    two.report(r, ReplicaBalancer::result_of(with_status(ErrorType::processing_failed, 500)),
               clock.now(), milliseconds(3));
  }
  EXPECT_TRUE(ejected(two, 0));
}

TEST_F(ReplicaBalancerTest, AReplicaFarSlowerThanItsPeersIsEjected) {
  ReplicaBalancer two(2, {});
  auto answer = [&](int replica, Duration latency) {
    const int r = two.pick(clock.now(), random, std::vector<int>{1 - replica});
    ASSERT_EQ(r, replica);
    two.report(r, R::succeeded, clock.now(), latency);
  };
  // Replica 0 answers in a second before replica 1 has answered anything: nothing to compare with.
  answer(0, seconds(1));
  for (int i = 0; i < 3; ++i) answer(1, milliseconds(5));
  // Against its peer's 5 ms, 1 s is slow: five such answers in a row eject it.
  for (int i = 0; i < 4; ++i) answer(0, seconds(1));
  EXPECT_FALSE(ejected(two, 0));
  answer(0, seconds(1));
  EXPECT_TRUE(ejected(two, 0));
  const ReplicaSnapshot s = two.snapshot(clock.now())[0];
  EXPECT_EQ(s.slow_calls, 5u);
  EXPECT_EQ(s.failures, 0u);  // slow is not failed: the answers were good
  EXPECT_EQ(s.ejections, 1u);
}

TEST_F(ReplicaBalancerTest, SlownessIsRelativeAndHasAFloor) {
  auto run = [&](ReplicaBalancerOptions o, Duration fast, Duration slow) {
    ReplicaBalancer two(2, o);
    for (int i = 0; i < 20; ++i) {
      two.report(two.pick(clock.now(), random, std::vector<int>{0}), R::succeeded, clock.now(),
                 fast);
      two.report(two.pick(clock.now(), random, std::vector<int>{1}), R::succeeded, clock.now(),
                 slow);
    }
    return two.snapshot(clock.now())[0];
  };
  // As slow as its peer: the agent is slow, not the replica.
  EXPECT_EQ(run({}, seconds(1), seconds(1)).slow_calls, 0u);
  // Ten times slower, but under the 100 ms floor: a fast agent's jitter.
  EXPECT_EQ(run({}, milliseconds(5), milliseconds(50)).slow_calls, 0u);
  // Four times slower: under the factor of 5.
  EXPECT_EQ(run({}, milliseconds(200), milliseconds(800)).slow_calls, 0u);
  // Off.
  EXPECT_EQ(run({.slow_call_factor = 0}, milliseconds(5), seconds(1)).slow_calls, 0u);
  const ReplicaSnapshot slow = run({}, milliseconds(5), seconds(1));
  EXPECT_GT(slow.slow_calls, 0u);
  EXPECT_TRUE(slow.ejected);
}

TEST_F(ReplicaBalancerTest, IgnoredAndLateResultsCountForNothing) {
  ReplicaBalancer two(2, {});
  for (int i = 0; i < 10; ++i) {
    const int r = two.pick(clock.now(), random, std::vector<int>{1});
    two.report(r, R::ignored, clock.now(), {});
  }
  two.abandon(two.pick(clock.now(), random, std::vector<int>{1}));
  ReplicaSnapshot s = two.snapshot(clock.now())[0];
  EXPECT_EQ(s.outstanding, 0);
  EXPECT_EQ(s.window_calls, 0);
  EXPECT_EQ(s.calls, 11u);

  // Calls that were out when replica 0 was ejected answer late, failing: they do not count
  // towards its next ejection.
  std::vector<int> late;
  for (int i = 0; i < 4; ++i) late.push_back(two.pick(clock.now(), random, std::vector<int>{1}));
  fail(two, 0, 5);
  ASSERT_TRUE(ejected(two, 0));
  for (int r : late) two.report(r, R::failed, clock.now(), seconds(1));
  s = two.snapshot(clock.now())[0];
  EXPECT_EQ(s.outstanding, 0);
  EXPECT_EQ(s.consecutive_failures, 0);
  clock.advance(seconds(30));
  fail(two, 0, 4);
  EXPECT_FALSE(ejected(two, 0));
}

TEST_F(ReplicaBalancerTest, KeepsAMovingAverageOfLatency) {
  ReplicaBalancer one(1, {});
  one.report(one.pick(clock.now(), random), R::succeeded, clock.now(), milliseconds(800));
  EXPECT_EQ(one.snapshot(clock.now())[0].average_latency, milliseconds(800));
  one.report(one.pick(clock.now(), random), R::failed, clock.now(), milliseconds(0));
  EXPECT_EQ(one.snapshot(clock.now())[0].average_latency, milliseconds(700));
}

TEST_F(ReplicaBalancerTest, RejectsOptionsOutOfRange) {
  EXPECT_THROW(ReplicaBalancer(0, {}), std::invalid_argument);
  auto with = [](auto change) {
    ReplicaBalancerOptions o;
    change(o);
    return o;
  };
  EXPECT_THROW(ReplicaBalancer(2, with([](auto& o) { o.consecutive_failures = -1; })),
               std::invalid_argument);
  EXPECT_THROW(ReplicaBalancer(2, with([](auto& o) { o.failure_rate_threshold = 0; })),
               std::invalid_argument);
  EXPECT_THROW(ReplicaBalancer(2, with([](auto& o) { o.failure_rate_window = {}; })),
               std::invalid_argument);
  EXPECT_THROW(ReplicaBalancer(2, with([](auto& o) { o.base_ejection_time = {}; })),
               std::invalid_argument);
  EXPECT_THROW(ReplicaBalancer(2, with([](auto& o) { o.max_ejection_time = seconds(10); })),
               std::invalid_argument);
  EXPECT_THROW(ReplicaBalancer(2, with([](auto& o) { o.max_ejection_percent = 101; })),
               std::invalid_argument);
  EXPECT_THROW(ReplicaBalancer(2, with([](auto& o) { o.slow_call_factor = 0.5; })),
               std::invalid_argument);
  EXPECT_THROW(ReplicaBalancer(2, with([](auto& o) { o.slow_call_minimum = -seconds(1); })),
               std::invalid_argument);

  AgentRegistry agents;
  AgentInfo a{.name = "a", .endpoints = {"http://a", "http://b"}};
  a.replica_balancing.max_ejection_percent = -5;
  Result<void> added = agents.add(a);
  ASSERT_FALSE(added.ok());
  EXPECT_EQ(added.error().type, ErrorType::configuration_error);
  EXPECT_NE(added.error().message.find("max_ejection_percent"), std::string::npos);
}

}  // namespace
}  // namespace mend
