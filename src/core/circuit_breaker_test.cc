#include "mend/core/circuit_breaker.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <vector>

#include "mend/core/random.h"
#include "test_env.h"

namespace mend {
namespace {

using namespace mend::testing;
using CS = CircuitState;

class Breaker : public ::testing::Test {
 protected:
  void make(CircuitBreakerOptions o = {}) {
    breaker = std::make_unique<CircuitBreaker>("agent", o);
    breaker->add_listener([this](const CircuitTransition& tr) {
      transitions.push_back({tr.from, tr.to});
      transition_times.push_back(tr.at);
      reasons.push_back(tr.reason);
    });
  }
  // One call that completes at once.
  bool call(bool succeed) {
    auto p = breaker->try_acquire(clock);
    if (!p.allowed()) return false;
    succeed ? breaker->on_success(p, clock) : breaker->on_failure(p, clock);
    return true;
  }
  // One call that takes `d`.
  bool call_taking(Duration d, bool succeed) {
    auto p = breaker->try_acquire(clock);
    if (!p.allowed()) return false;
    clock.advance(d);
    succeed ? breaker->on_success(p, clock) : breaker->on_failure(p, clock);
    return true;
  }
  ManualClock clock;
  std::unique_ptr<CircuitBreaker> breaker;
  std::vector<std::pair<CS, CS>> transitions;
  std::vector<TimePoint> transition_times;
  std::vector<std::string> reasons;
};

TEST_F(Breaker, DefaultsAreTheSpecifications) {
  CircuitBreakerOptions o;
  EXPECT_EQ(o.mode, BreakerMode::consecutive);
  EXPECT_EQ(o.failure_threshold, 5);
  EXPECT_EQ(o.recovery_timeout, seconds(60));
  EXPECT_EQ(o.success_threshold, 3);
}

TEST_F(Breaker, ABreakerThatContinuesAnotherKeepsItsStateAndItsTimer) {
  make();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(call(false));
  ASSERT_EQ(breaker->state(), CS::open);
  clock.advance(seconds(40));
  // A new breaker for the same agent (its replicas changed): still open, probing when the first
  // would have (60 s after it opened, not 60 s from now), and no transition announced.
  std::unique_ptr<CircuitBreaker> before = std::move(breaker);
  const std::size_t announced = transitions.size();  // closed -> open
  make();
  breaker->continue_from(*before);
  EXPECT_EQ(breaker->state(), CS::open);
  EXPECT_EQ(transitions.size(), announced) << "nothing changed: nothing to announce";
  EXPECT_FALSE(breaker->try_acquire(clock).allowed());
  clock.advance(seconds(20));
  EXPECT_TRUE(call(true));  // the half-open probe
  EXPECT_EQ(breaker->state(), CS::half_open);
  EXPECT_EQ(breaker->snapshot(clock).transitions, 2u);  // its first, then half-open

  // Failures in a row carry over too: three before, two after open it.
  make();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(call(false));
  before = std::move(breaker);
  make();
  breaker->continue_from(*before);
  EXPECT_EQ(breaker->state(), CS::closed);
  EXPECT_EQ(breaker->snapshot(clock).failure_count, 3);
  ASSERT_TRUE(call(false));
  EXPECT_EQ(breaker->state(), CS::closed);
  ASSERT_TRUE(call(false));
  EXPECT_EQ(breaker->state(), CS::open);
  // Isolated stays isolated.
  breaker->isolate(clock);
  before = std::move(breaker);
  make();
  breaker->continue_from(*before);
  EXPECT_EQ(breaker->state(), CS::isolated);
  breaker->continue_from(*breaker);  // itself: nothing
  EXPECT_EQ(breaker->state(), CS::isolated);
}

TEST_F(Breaker, OpensAtTheFifthFailureAndRejectsAtOnce) {
  make();
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(call(false));
  EXPECT_EQ(breaker->state(), CS::closed);
  EXPECT_EQ(breaker->snapshot(clock).failure_count, 4);
  clock.advance(seconds(3));
  const TimePoint opened = clock.now();
  ASSERT_TRUE(call(false));
  EXPECT_EQ(breaker->state(), CS::open);
  ASSERT_EQ(transitions.size(), 1u);
  EXPECT_EQ(transitions[0], std::make_pair(CS::closed, CS::open));
  EXPECT_EQ(transition_times[0], opened);
  EXPECT_EQ(reasons[0], "5 failures");

  auto p = breaker->try_acquire(clock);
  EXPECT_FALSE(p.allowed());
  EXPECT_EQ(p.retry_after(), seconds(60));
  Error e = breaker->rejection(p);
  EXPECT_EQ(e.stop, StopReason::circuit_open);
  EXPECT_EQ(e.type, ErrorType::external_service_down);
  EXPECT_EQ(e.retry_after, seconds(60));
  EXPECT_NE(e.message.find("circuit 'agent' is open"), std::string::npos);
}

TEST_F(Breaker, ASuccessInClosedForgivesOneFailure) {
  make();
  for (int i = 0; i < 4; ++i) call(false);
  call(true);  // 3
  EXPECT_EQ(breaker->snapshot(clock).failure_count, 3);
  call(false);  // 4
  EXPECT_EQ(breaker->state(), CS::closed);
  call(false);  // 5
  EXPECT_EQ(breaker->state(), CS::open);
  // And never below zero.
  make();
  for (int i = 0; i < 10; ++i) call(true);
  EXPECT_EQ(breaker->snapshot(clock).failure_count, 0);
}

TEST_F(Breaker, HalfOpensAfterTheRecoveryTimeoutAndClosesAfterThreeSuccesses) {
  make();
  for (int i = 0; i < 5; ++i) call(false);
  clock.advance(seconds(60) - milliseconds(1));
  auto early = breaker->try_acquire(clock);
  EXPECT_FALSE(early.allowed());
  EXPECT_EQ(early.retry_after(), milliseconds(1));
  clock.advance(milliseconds(1));
  ASSERT_TRUE(call(true));
  EXPECT_EQ(breaker->state(), CS::half_open);
  ASSERT_TRUE(call(true));
  EXPECT_EQ(breaker->state(), CS::half_open);
  ASSERT_TRUE(call(true));
  EXPECT_EQ(breaker->state(), CS::closed);
  EXPECT_EQ(breaker->snapshot(clock).failure_count, 0);
  EXPECT_EQ(transitions,
            (std::vector<std::pair<CS, CS>>{
                {CS::closed, CS::open}, {CS::open, CS::half_open}, {CS::half_open, CS::closed}}));
  // Closed again: it takes five fresh failures to open.
  for (int i = 0; i < 4; ++i) call(false);
  EXPECT_EQ(breaker->state(), CS::closed);
}

TEST_F(Breaker, AnyHalfOpenFailureReopensForAnotherRecoveryTimeout) {
  make();
  for (int i = 0; i < 5; ++i) call(false);
  clock.advance(seconds(60));
  call(true);
  call(true);
  clock.advance(seconds(5));
  const TimePoint reopened = clock.now();
  call(false);
  EXPECT_EQ(breaker->state(), CS::open);
  EXPECT_EQ(transition_times.back(), reopened);
  EXPECT_EQ(reasons.back(), "half-open probe failed");
  clock.advance(seconds(59));
  EXPECT_FALSE(breaker->try_acquire(clock).allowed());
  clock.advance(seconds(1));
  EXPECT_TRUE(call(true));
  EXPECT_EQ(breaker->state(), CS::half_open);
}

TEST_F(Breaker, HalfOpenAdmitsABoundedNumberOfProbesAtOnce) {
  make();
  for (int i = 0; i < 5; ++i) call(false);
  clock.advance(seconds(60));
  auto a = breaker->try_acquire(clock);
  auto b = breaker->try_acquire(clock);
  auto c = breaker->try_acquire(clock);
  auto d = breaker->try_acquire(clock);
  EXPECT_TRUE(a.allowed() && b.allowed() && c.allowed());
  EXPECT_FALSE(d.allowed());
  EXPECT_EQ(d.state(), CS::half_open);
  EXPECT_EQ(breaker->snapshot(clock).half_open_in_flight, 3);
  breaker->on_ignored(c);  // abandoned: frees a slot, counts nothing
  EXPECT_TRUE(breaker->try_acquire(clock).allowed());
  breaker->on_success(a, clock);
  breaker->on_success(b, clock);
  EXPECT_EQ(breaker->state(), CS::half_open);
  EXPECT_EQ(breaker->snapshot(clock).half_open_successes, 2);
}

TEST_F(Breaker, ResultsOfCallsAdmittedBeforeATransitionAreIgnored) {
  make();
  auto stale = breaker->try_acquire(clock);
  for (int i = 0; i < 5; ++i) call(false);
  ASSERT_EQ(breaker->state(), CS::open);
  clock.advance(seconds(60));
  call(true);                         // half-open, 1 success
  breaker->on_failure(stale, clock);  // admitted while closed, long ago: must not re-open
  EXPECT_EQ(breaker->state(), CS::half_open);
  breaker->on_success(stale, clock);  // nor count as a probe success
  EXPECT_EQ(breaker->snapshot(clock).half_open_successes, 1);
}

TEST_F(Breaker, IsolateHoldsItOpenUntilReset) {
  make();
  breaker->isolate(clock);
  EXPECT_EQ(breaker->state(), CS::isolated);
  clock.advance(std::chrono::hours(24));
  auto p = breaker->try_acquire(clock);
  EXPECT_FALSE(p.allowed());
  EXPECT_EQ(breaker->rejection(p).stop, StopReason::circuit_open);
  EXPECT_NE(breaker->rejection(p).message.find("isolated"), std::string::npos);
  breaker->reset(clock);
  EXPECT_EQ(breaker->state(), CS::closed);
  EXPECT_TRUE(call(true));
  EXPECT_EQ(reasons, (std::vector<std::string>{"isolated by operator", "reset by operator"}));
}

TEST_F(Breaker, ResetClosesAnOpenCircuit) {
  make();
  for (int i = 0; i < 5; ++i) call(false);
  breaker->reset(clock);
  EXPECT_EQ(breaker->state(), CS::closed);
  EXPECT_EQ(breaker->snapshot(clock).failure_count, 0);
  EXPECT_EQ(breaker->snapshot(clock).transitions, 2u);
}

// Forcing a closed circuit closed forgets its counts but reports no transition: no
// "closed -> closed" in the log, no count in mend_circuit_transitions_total.
TEST_F(Breaker, ResettingAClosedCircuitForgetsItsCountsWithoutATransition) {
  make();
  for (int i = 0; i < 4; ++i) call(false);
  EXPECT_EQ(breaker->snapshot(clock).failure_count, 4);
  breaker->reset(clock);
  EXPECT_EQ(breaker->state(), CS::closed);
  EXPECT_EQ(breaker->snapshot(clock).failure_count, 0);
  EXPECT_EQ(breaker->snapshot(clock).transitions, 0u);
  EXPECT_TRUE(transitions.empty());
  for (int i = 0; i < 4; ++i) call(false);
  EXPECT_EQ(breaker->state(), CS::closed) << "the four failures before the reset do not count";
}

TEST_F(Breaker, RejectsInvalidOptionsNamingTheField) {
  auto message_for = [](CircuitBreakerOptions o) {
    try {
      CircuitBreaker b("x", o);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  CircuitBreakerOptions o;
  o.failure_threshold = 0;
  EXPECT_NE(message_for(o).find("failure_threshold"), std::string::npos);
  o = CircuitBreakerOptions::failure_rate();
  o.failure_rate_threshold = 1.5;
  EXPECT_NE(message_for(o).find("failure_rate_threshold"), std::string::npos);
  o = CircuitBreakerOptions::failure_rate();
  o.window_size = 10;  // minimum_calls 100 could never be reached
  EXPECT_NE(message_for(o).find("minimum_calls"), std::string::npos);
  o = {};
  o.recovery_timeout = -seconds(1);
  EXPECT_NE(message_for(o).find("recovery_timeout"), std::string::npos);
}

// --- failure-rate mode ---------------------------------------------------------------------

CircuitBreakerOptions rate_options(int window, int minimum) {
  CircuitBreakerOptions o = CircuitBreakerOptions::failure_rate();
  o.window_size = window;
  o.minimum_calls = minimum;
  return o;
}

TEST_F(Breaker, FailureRateDefaultsAreResilience4js) {
  CircuitBreakerOptions o = CircuitBreakerOptions::failure_rate();
  EXPECT_EQ(o.mode, BreakerMode::failure_rate);
  EXPECT_DOUBLE_EQ(o.failure_rate_threshold, 0.5);
  EXPECT_EQ(o.window_size, 100);
  EXPECT_EQ(o.minimum_calls, 100);
  EXPECT_EQ(o.half_open_calls, 10);
  EXPECT_EQ(o.slow_call_threshold, seconds(60));
}

TEST_F(Breaker, FailureRateOpensAtTheThresholdOnceTheMinimumIsReached) {
  make(rate_options(10, 10));
  for (int i = 0; i < 5; ++i) call(true);
  for (int i = 0; i < 4; ++i) call(false);
  EXPECT_EQ(breaker->state(), CS::closed);  // 9 calls: below the minimum
  call(false);                              // 5 of 10 = 50 %
  EXPECT_EQ(breaker->state(), CS::open);
  EXPECT_EQ(reasons.back(), "failure rate 50.0 % over 10 calls");
}

TEST_F(Breaker, FailureRateWindowSlidesOverTheLastCalls) {
  make(rate_options(10, 10));
  for (int i = 0; i < 4; ++i) call(false);
  for (int i = 0; i < 16; ++i) call(true);  // the 4 failures slide out of the window
  EXPECT_EQ(breaker->snapshot(clock).window_failures, 0);
  for (int i = 0; i < 4; ++i) call(false);
  EXPECT_EQ(breaker->state(), CS::closed);  // 4 of 10
  call(false);
  EXPECT_EQ(breaker->state(), CS::open);  // 5 of 10
}

TEST_F(Breaker, SlowCallsOpenTheCircuit) {
  CircuitBreakerOptions o = rate_options(4, 4);
  o.slow_call_threshold = seconds(2);
  o.slow_call_rate_threshold = 0.5;
  make(o);
  call_taking(seconds(1), true);
  call_taking(seconds(1), true);
  call_taking(seconds(3), true);
  EXPECT_EQ(breaker->state(), CS::closed);
  call_taking(seconds(2), true);  // 2 of 4 slow
  EXPECT_EQ(breaker->state(), CS::open);
  EXPECT_EQ(reasons.back(), "slow-call rate 50.0 % over 4 calls");
}

TEST_F(Breaker, TimeWindowForgetsOldBuckets) {
  CircuitBreakerOptions o = CircuitBreakerOptions::failure_rate();
  o.window = WindowKind::time;
  o.window_duration = seconds(10);
  o.window_buckets = 10;
  o.minimum_calls = 5;
  make(o);
  for (int i = 0; i < 4; ++i) call(false);
  EXPECT_EQ(breaker->snapshot(clock).window_calls, 4);
  clock.advance(seconds(11));
  EXPECT_EQ(breaker->snapshot(clock).window_calls, 0);
  call(false);
  for (int i = 0; i < 4; ++i) call(true);
  EXPECT_EQ(breaker->state(), CS::closed);  // 1 of 5
  call(false);
  call(false);
  EXPECT_EQ(breaker->state(), CS::closed);  // 3 of 7
  call(false);
  EXPECT_EQ(breaker->state(), CS::open);  // 4 of 8
}

TEST_F(Breaker, ResettingAClosedFailureRateCircuitEmptiesItsWindow) {
  for (WindowKind kind : {WindowKind::count, WindowKind::time}) {
    CircuitBreakerOptions o = rate_options(10, 10);
    o.window = kind;
    make(o);
    for (int i = 0; i < 4; ++i) call(false);
    breaker->reset(clock);
    EXPECT_EQ(breaker->snapshot(clock).window_calls, 0);
    call(true);
    call(false);
    const CircuitSnapshot s = breaker->snapshot(clock);
    EXPECT_EQ(s.window_calls, 2);
    EXPECT_EQ(s.window_failures, 1);
  }
}

TEST_F(Breaker, FailureRateHalfOpenDecidesOnItsProbes) {
  make(rate_options(10, 10));
  for (int i = 0; i < 10; ++i) call(false);
  ASSERT_EQ(breaker->state(), CS::open);
  clock.advance(seconds(60));
  // 10 probes in all; 4 failures out of 10 is below 50 %: closes when the last is in.
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(call(false));
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(call(true));
  EXPECT_EQ(breaker->state(), CS::half_open);
  ASSERT_TRUE(call(true));
  EXPECT_EQ(breaker->state(), CS::closed);

  for (int i = 0; i < 10; ++i) call(false);
  clock.advance(seconds(60));
  // 5 failures make 50 % whatever the other 5 do: re-opens at once.
  for (int i = 0; i < 4; ++i) call(false);
  EXPECT_EQ(breaker->state(), CS::half_open);
  call(false);
  EXPECT_EQ(breaker->state(), CS::open);
}

TEST_F(Breaker, FailureRateHalfOpenAdmitsOnlyItsProbes) {
  make(rate_options(10, 10));
  for (int i = 0; i < 10; ++i) call(false);
  clock.advance(seconds(60));
  std::vector<CircuitBreaker::Permit> permits;
  for (int i = 0; i < 10; ++i) permits.push_back(breaker->try_acquire(clock));
  for (const auto& p : permits) EXPECT_TRUE(p.allowed());
  EXPECT_FALSE(breaker->try_acquire(clock).allowed());
}

// --- property: the consecutive breaker is the specification's state machine ------------------

// The specification's CircuitBreaker, transcribed: the reference the real one must agree with.
struct SpecificationModel {
  CS state = CS::closed;
  int failure_count = 0;
  int success_count = 0;
  TimePoint last_failure{};
  bool has_failure = false;

  bool admit(TimePoint now) {
    if (state == CS::open) {
      if (!has_failure || now - last_failure >= seconds(60)) {
        state = CS::half_open;
        success_count = 0;
      } else {
        return false;
      }
    }
    return true;
  }
  void success() {
    if (state == CS::half_open) {
      if (++success_count >= 3) {
        state = CS::closed;
        failure_count = 0;
      }
    } else if (state == CS::closed) {
      failure_count = std::max(0, failure_count - 1);
    }
  }
  void failure(TimePoint now) {
    ++failure_count;
    last_failure = now;
    has_failure = true;
    if (failure_count >= 5 || state == CS::half_open) state = CS::open;
  }
};

TEST_F(Breaker, AgreesWithTheSpecificationsStateMachineOverManyRandomRuns) {
  for (std::uint64_t seed = 1; seed <= 300; ++seed) {
    SeededRandom random(seed);
    make();
    SpecificationModel model;
    int half_open_successes = 0;
    for (int step = 0; step < 400; ++step) {
      clock.advance(from_seconds(random.next_unit() * 20));
      const bool succeed = random.next_unit() < 0.6;
      const bool model_admits = model.admit(clock.now());
      auto p = breaker->try_acquire(clock);
      ASSERT_EQ(p.allowed(), model_admits) << "seed " << seed << " step " << step;
      if (p.allowed()) {
        if (breaker->state() == CS::half_open && succeed) ++half_open_successes;
        if (succeed) {
          breaker->on_success(p, clock);
          model.success();
        } else {
          breaker->on_failure(p, clock);
          model.failure(clock.now());
        }
      }
      ASSERT_EQ(breaker->state(), model.state) << "seed " << seed << " step " << step;
      if (breaker->state() == CS::closed) {
        ASSERT_EQ(breaker->snapshot(clock).failure_count, model.failure_count);
      }
      if (!transitions.empty() && transitions.back() == std::make_pair(CS::half_open, CS::closed)) {
        // Invariant: no close without the required half-open successes.
        ASSERT_GE(half_open_successes, 3);
        half_open_successes = 0;
        transitions.clear();
      }
      if (breaker->state() != CS::half_open) half_open_successes = 0;
    }
  }
}

// --- registry ------------------------------------------------------------------------------------

TEST(CircuitBreakerRegistry, OneBreakerPerKeyWithPerKeyOptions) {
  CircuitBreakerRegistry registry;
  CircuitBreakerOptions strict;
  strict.failure_threshold = 1;
  registry.set_options("payments", strict);
  std::vector<std::string> opened;
  registry.add_listener([&](const CircuitTransition& t) {
    if (t.to == CS::open) opened.emplace_back(t.name);
  });
  auto a = registry.get("search");
  EXPECT_EQ(a, registry.get("search"));
  auto b = registry.get("payments");
  EXPECT_EQ(b->options().failure_threshold, 1);
  EXPECT_EQ(a->options().failure_threshold, 5);
  EXPECT_EQ(registry.find("nope"), nullptr);
  EXPECT_EQ(registry.all().size(), 2u);
  ManualClock clock;
  auto p = b->try_acquire(clock);
  b->on_failure(p, clock);
  EXPECT_EQ(opened, (std::vector<std::string>{"payments"}));
}

TEST(CircuitBreakerEvents, TransitionsAreForwardedToASink) {
  RecordingEventSink sink;
  CircuitBreaker b("db", {});
  forward_transitions(b, sink);
  ManualClock clock;
  b.isolate(clock);
  ASSERT_EQ(sink.count(EventKind::circuit_transition), 1u);
  Event e = sink.events()[0];
  EXPECT_EQ(e.source, "db");
  EXPECT_EQ(e.to, CS::isolated);
  EXPECT_EQ(e.describe(), "circuit_transition [db] closed -> isolated (isolated by operator)");
}

}  // namespace
}  // namespace mend
