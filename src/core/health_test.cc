#include "mend/core/health.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

namespace mend {
namespace {

using std::chrono::seconds;
using HS = HealthState;

ProbeResult answered(HS reported) {
  ProbeResult r;
  r.answered = true;
  r.reported = reported;
  return r;
}
ProbeResult no_answer(std::string detail = "timeout") {
  ProbeResult r;
  r.detail = std::move(detail);
  return r;
}

class Health : public ::testing::Test {
 protected:
  ManualClock clock;
};

TEST(HealthStateNames, RoundTrip) {
  for (HS s : {HS::unknown, HS::healthy, HS::degraded, HS::unhealthy}) {
    EXPECT_EQ(parse_health_state(to_string(s)), s);
  }
  EXPECT_EQ(to_string(HS::degraded), "degraded");
  EXPECT_EQ(parse_health_state("Healthy"), std::nullopt);
  EXPECT_EQ(parse_health_state(""), std::nullopt);
}

TEST(ObservedHealth, WhatOneProbeSays) {
  EXPECT_EQ(observed_health(no_answer()), HS::unhealthy);
  EXPECT_EQ(observed_health(answered(HS::unhealthy)), HS::unhealthy);
  EXPECT_EQ(observed_health(answered(HS::degraded)), HS::degraded);
  EXPECT_EQ(observed_health(answered(HS::healthy)), HS::healthy);
  EXPECT_EQ(observed_health(answered(HS::unknown)), HS::healthy);  // an answer passes
  EXPECT_FALSE(probe_succeeded(no_answer()));
  EXPECT_TRUE(probe_succeeded(answered(HS::degraded)));
  // Not answered wins over whatever the result claims.
  ProbeResult odd;
  odd.reported = HS::healthy;
  EXPECT_FALSE(probe_succeeded(odd));
}

TEST_F(Health, DefaultsAreKubernetes) {
  const ProbeOptions o;
  EXPECT_EQ(o.period, seconds(10));
  EXPECT_EQ(o.timeout, seconds(1));
  EXPECT_EQ(o.failure_threshold, 3);
  EXPECT_EQ(o.success_threshold, 1);
  EXPECT_EQ(o.initial_delay, seconds(0));
  HealthTracker t({}, clock.now());
  EXPECT_EQ(t.state(), HS::unknown);
  EXPECT_EQ(t.consecutive_failures(), 0);
  EXPECT_FALSE(t.last_result().answered);
}

TEST_F(Health, FailuresBelowThresholdMakeHealthyDegradedThenUnhealthyAtThree) {
  HealthTracker t({}, clock.now());
  EXPECT_EQ(t.record(answered(HS::healthy), clock.now()), HS::healthy);
  EXPECT_EQ(t.record(no_answer(), clock.now()), HS::degraded);  // flaky
  EXPECT_EQ(t.consecutive_failures(), 1);
  EXPECT_EQ(t.record(answered(HS::unhealthy), clock.now()), HS::degraded);
  EXPECT_EQ(t.consecutive_failures(), 2);
  EXPECT_EQ(t.record(no_answer(), clock.now()), HS::unhealthy);
  EXPECT_EQ(t.consecutive_failures(), 3);
  EXPECT_EQ(t.record(no_answer(), clock.now()), HS::unhealthy);
  EXPECT_EQ(t.consecutive_successes(), 0);
  // One success (threshold 1) and it is what it says it is.
  EXPECT_EQ(t.record(answered(HS::healthy), clock.now()), HS::healthy);
  EXPECT_EQ(t.consecutive_failures(), 0);
  EXPECT_EQ(t.consecutive_successes(), 1);
}

TEST_F(Health, FailuresBelowThresholdLeaveOtherStates) {
  HealthTracker unknown({}, clock.now());
  EXPECT_EQ(unknown.record(no_answer(), clock.now()), HS::unknown);
  EXPECT_EQ(unknown.record(no_answer(), clock.now()), HS::unknown);
  EXPECT_EQ(unknown.record(no_answer(), clock.now()), HS::unhealthy);

  HealthTracker degraded({}, clock.now());
  degraded.record(answered(HS::degraded), clock.now());
  EXPECT_EQ(degraded.record(no_answer(), clock.now()), HS::degraded);
}

TEST_F(Health, SuccessAdoptsTheReportedState) {
  HealthTracker t({}, clock.now());
  EXPECT_EQ(t.record(answered(HS::degraded), clock.now()), HS::degraded);
  EXPECT_EQ(t.record(answered(HS::healthy), clock.now()), HS::healthy);
  EXPECT_EQ(t.record(answered(HS::degraded), clock.now()), HS::degraded);
  EXPECT_EQ(t.record(answered(HS::unknown), clock.now()), HS::healthy);
}

TEST_F(Health, SuccessResetsTheFailureCount) {
  HealthTracker t({}, clock.now());
  t.record(answered(HS::healthy), clock.now());
  t.record(no_answer(), clock.now());
  t.record(no_answer(), clock.now());
  t.record(answered(HS::healthy), clock.now());
  EXPECT_EQ(t.record(no_answer(), clock.now()), HS::degraded);  // count restarted at 1
  EXPECT_EQ(t.record(no_answer(), clock.now()), HS::degraded);
  EXPECT_EQ(t.record(no_answer(), clock.now()), HS::unhealthy);
}

TEST_F(Health, CustomThresholdsTwoAndTwo) {
  ProbeOptions o;
  o.failure_threshold = 2;
  o.success_threshold = 2;
  HealthTracker t(o, clock.now());
  EXPECT_EQ(t.record(answered(HS::healthy), clock.now()), HS::unknown);  // 1 of 2
  EXPECT_EQ(t.record(answered(HS::healthy), clock.now()), HS::healthy);
  EXPECT_EQ(t.record(no_answer(), clock.now()), HS::degraded);
  EXPECT_EQ(t.record(no_answer(), clock.now()), HS::unhealthy);
  EXPECT_EQ(t.record(answered(HS::healthy), clock.now()), HS::unhealthy);  // 1 of 2
  EXPECT_EQ(t.consecutive_successes(), 1);
  EXPECT_EQ(t.record(no_answer(), clock.now()), HS::unhealthy);  // streak broken
  EXPECT_EQ(t.consecutive_successes(), 0);
  EXPECT_EQ(t.record(answered(HS::degraded), clock.now()), HS::unhealthy);
  EXPECT_EQ(t.record(answered(HS::healthy), clock.now()), HS::healthy);
  // Already past the threshold: a degraded report takes effect at once.
  EXPECT_EQ(t.record(answered(HS::degraded), clock.now()), HS::degraded);
}

TEST_F(Health, ProbeSchedule) {
  ProbeOptions o;
  o.initial_delay = seconds(5);
  const TimePoint start = clock.now();
  HealthTracker t(o, start);
  EXPECT_EQ(t.next_probe_at(), start + seconds(5));
  EXPECT_FALSE(t.probe_due(start));
  EXPECT_FALSE(t.probe_due(start + seconds(4)));
  EXPECT_TRUE(t.probe_due(start + seconds(5)));

  clock.advance(seconds(6));
  t.record(answered(HS::healthy), clock.now());
  EXPECT_EQ(t.next_probe_at(), clock.now() + seconds(10));
  EXPECT_FALSE(t.probe_due(clock.now() + seconds(9)));
  EXPECT_TRUE(t.probe_due(clock.now() + seconds(10)));
  // A failed probe is rescheduled the same way.
  clock.advance(seconds(10));
  t.record(no_answer(), clock.now());
  EXPECT_EQ(t.next_probe_at(), clock.now() + seconds(10));
}

TEST_F(Health, ZeroInitialDelayMeansDueAtOnce) {
  HealthTracker t({}, clock.now());
  EXPECT_TRUE(t.probe_due(clock.now()));
}

TEST_F(Health, KeepsTheLastResult) {
  HealthTracker t({}, clock.now());
  ProbeResult r = answered(HS::degraded);
  r.detail = "pool busy";
  r.metrics["memory_percent"] = 71.5;
  t.record(r, clock.now());
  const ProbeResult last = t.last_result();
  EXPECT_EQ(last.detail, "pool busy");
  EXPECT_EQ(last.metrics.at("memory_percent"), 71.5);
  EXPECT_EQ(last.reported, HS::degraded);
}

TEST(HealthOptions, RejectsBadValuesNamingTheField) {
  auto message_for = [](ProbeOptions o) -> std::string {
    try {
      HealthTracker t(o);
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "accepted";
  };
  ProbeOptions o;
  o.period = seconds(0);
  EXPECT_NE(message_for(o).find("period"), std::string::npos);
  o = {};
  o.timeout = seconds(-1);
  EXPECT_NE(message_for(o).find("timeout"), std::string::npos);
  o = {};
  o.failure_threshold = 0;
  EXPECT_NE(message_for(o).find("failure_threshold"), std::string::npos);
  o = {};
  o.success_threshold = -2;
  EXPECT_NE(message_for(o).find("success_threshold"), std::string::npos);
  o = {};
  o.initial_delay = seconds(-1);
  EXPECT_NE(message_for(o).find("initial_delay"), std::string::npos);
  EXPECT_EQ(message_for(ProbeOptions{}), "accepted");
}

}  // namespace
}  // namespace mend
