#include "mend/core/recovery.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace mend {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Steps = std::vector<std::string>;

// A fake of our own interface: records every call, fails the actions it is told to, and answers
// probes with a chosen result.
class FakeOps final : public AgentOperations {
 public:
  ProbeResult probe(const std::string& agent) override {
    log("probe", agent);
    if (probe_throws) throw std::runtime_error("probe exploded");
    return probe_result;
  }
  Result<void> clear_caches(const std::string& agent) override {
    return act("clear_caches", agent);
  }
  Result<void> reset_connection_pools(const std::string& agent) override {
    return act("reset_connection_pools", agent);
  }
  Result<void> increase_connection_limits(const std::string& agent) override {
    return act("increase_connection_limits", agent);
  }
  Result<void> reconnect_database(const std::string& agent) override {
    return act("reconnect_database", agent);
  }
  Result<void> restart(const std::string& agent, bool graceful) override {
    return act(graceful ? "restart(graceful)" : "restart(force)", agent);
  }
  Result<void> wait_until_ready(const std::string& agent, Duration timeout) override {
    waited_for.push_back(timeout);
    return act("wait_until_ready", agent);
  }

  std::set<std::string> failing;   // these actions return an error
  std::set<std::string> throwing;  // these actions throw
  ProbeResult probe_result = healthy();
  bool probe_throws = false;
  Steps calls;
  std::vector<std::string> agents;
  std::vector<Duration> waited_for;

  static ProbeResult healthy() {
    ProbeResult r;
    r.answered = true;
    r.reported = HealthState::healthy;
    return r;
  }

 private:
  void log(const std::string& name, const std::string& agent) {
    calls.push_back(name);
    agents.push_back(agent);
  }
  Result<void> act(const std::string& name, const std::string& agent) {
    log(name, agent);
    if (throwing.count(name)) throw std::runtime_error(name + " threw");
    if (failing.count(name)) {
      return Error::classified_as(ErrorType::service_unavailable, Severity::high, name + " failed");
    }
    return {};
  }
};

RecoveryContext context(std::string issue) {
  RecoveryContext ctx;
  ctx.agent = "reviewer";
  ctx.issue = std::move(issue);
  return ctx;
}

// --- the specification's strategies -----------------------------------------------------------

TEST(Strategies, MemoryClearsCachesThenRestartsGracefully) {
  FakeOps ops;
  const RecoveryResult r =
      RecoveryStrategies::standard().attempt(context("high_memory_usage"), ops);
  EXPECT_TRUE(r.success);
  EXPECT_EQ(r.action, "memory_cleanup");
  EXPECT_EQ(r.reason, "");
  EXPECT_EQ(ops.calls, (Steps{"clear_caches", "restart(graceful)", "wait_until_ready"}));
  EXPECT_EQ(r.steps, ops.calls);
  EXPECT_EQ(ops.agents, (Steps{"reviewer", "reviewer", "reviewer"}));
  EXPECT_EQ(ops.waited_for, std::vector<Duration>{seconds(60)});
}

TEST(Strategies, MemoryStopsAtTheFirstFailure) {
  FakeOps ops;
  ops.failing = {"clear_caches"};
  const RecoveryResult r =
      RecoveryStrategies::standard().attempt(context("high_memory_usage"), ops);
  EXPECT_FALSE(r.success);
  EXPECT_EQ(r.action, "memory_cleanup");
  EXPECT_EQ(r.reason, "action_failed");
  EXPECT_EQ(r.error, "clear_caches failed");
  EXPECT_EQ(ops.calls, Steps{"clear_caches"});
}

TEST(Strategies, ConnectionsResetPoolsThenIncreaseLimits) {
  FakeOps ops;
  const RecoveryResult r =
      RecoveryStrategies::standard().attempt(context("connection_pool_exhausted"), ops);
  EXPECT_TRUE(r.success);
  EXPECT_EQ(r.action, "connection_recovery");
  EXPECT_EQ(ops.calls, (Steps{"reset_connection_pools", "increase_connection_limits"}));

  FakeOps failing;
  failing.failing = {"increase_connection_limits"};
  const RecoveryResult f =
      RecoveryStrategies::standard().attempt(context("connection_pool_exhausted"), failing);
  EXPECT_FALSE(f.success);
  EXPECT_EQ(f.error, "increase_connection_limits failed");
  EXPECT_EQ(f.steps, (Steps{"reset_connection_pools", "increase_connection_limits"}));
}

TEST(Strategies, ServiceRestartsGracefullyAndWaitsForReady) {
  FakeOps ops;
  RecoveryContext ctx = context("service_unresponsive");
  ctx.ready_timeout = seconds(42);
  const RecoveryResult r = RecoveryStrategies::standard().attempt(ctx, ops);
  EXPECT_TRUE(r.success);
  EXPECT_EQ(r.action, "service_restart");
  EXPECT_EQ(ops.calls, (Steps{"restart(graceful)", "wait_until_ready"}));
  EXPECT_EQ(ops.waited_for, std::vector<Duration>{seconds(42)});
  EXPECT_EQ(r.error, "");
}

TEST(Strategies, ServiceForceRestartsWhenNotReady) {
  FakeOps ops;
  ops.failing = {"wait_until_ready"};
  const RecoveryResult r =
      RecoveryStrategies::standard().attempt(context("service_unresponsive"), ops);
  EXPECT_TRUE(r.success);
  EXPECT_EQ(r.action, "service_force_restart");
  EXPECT_EQ(ops.calls, (Steps{"restart(graceful)", "wait_until_ready", "restart(force)"}));
  EXPECT_EQ(r.error, "wait_until_ready failed");  // why it had to force
}

TEST(Strategies, ServiceForceRestartsWhenGracefulRestartThrows) {
  FakeOps ops;
  ops.throwing = {"restart(graceful)"};
  const RecoveryResult r =
      RecoveryStrategies::standard().attempt(context("service_unresponsive"), ops);
  EXPECT_TRUE(r.success);
  EXPECT_EQ(r.action, "service_force_restart");
  EXPECT_EQ(ops.calls, (Steps{"restart(graceful)", "restart(force)"}));
  EXPECT_EQ(r.error, "restart(graceful) threw");
}

TEST(Strategies, ServiceFailsWhenForceRestartFailsToo) {
  FakeOps ops;
  ops.failing = {"restart(graceful)", "restart(force)"};
  const RecoveryResult r =
      RecoveryStrategies::standard().attempt(context("service_unresponsive"), ops);
  EXPECT_FALSE(r.success);
  EXPECT_EQ(r.reason, "action_failed");
  EXPECT_EQ(r.error, "restart(force) failed");
  EXPECT_EQ(ops.calls, (Steps{"restart(graceful)", "restart(force)"}));
}

TEST(Strategies, DatabaseReconnects) {
  FakeOps ops;
  const RecoveryResult r =
      RecoveryStrategies::standard().attempt(context("database_connection_lost"), ops);
  EXPECT_TRUE(r.success);
  EXPECT_EQ(r.action, "database_reconnect");
  EXPECT_EQ(ops.calls, Steps{"reconnect_database"});

  FakeOps down;
  down.failing = {"reconnect_database"};
  const RecoveryResult f =
      RecoveryStrategies::standard().attempt(context("database_connection_lost"), down);
  EXPECT_FALSE(f.success);
  EXPECT_EQ(f.error, "reconnect_database failed");
}

TEST(Strategies, UnknownIssueHasNoStrategy) {
  FakeOps ops;
  const RecoveryStrategies s = RecoveryStrategies::standard();
  EXPECT_FALSE(s.has("disk_full"));
  const RecoveryResult r = s.attempt(context("disk_full"), ops);
  EXPECT_FALSE(r.success);
  EXPECT_EQ(r.action, "");
  EXPECT_EQ(r.reason, "no_strategy");
  EXPECT_TRUE(ops.calls.empty());
  EXPECT_FALSE(RecoveryStrategies().has("high_memory_usage"));
}

TEST(Strategies, AddReplaceAndRemove) {
  RecoveryStrategies s = RecoveryStrategies::standard();
  s.add("disk_full", [](const RecoveryContext& ctx, AgentOperations& ops) {
    RecoveryResult r;
    r.steps.push_back("clear_caches");
    r.success = ops.clear_caches(ctx.agent).ok();
    r.action = "disk_cleanup";
    return r;
  });
  FakeOps ops;
  EXPECT_EQ(s.attempt(context("disk_full"), ops).action, "disk_cleanup");
  s.add("high_memory_usage", [](const RecoveryContext&, AgentOperations&) {
    throw std::logic_error("bug in a strategy");
    return RecoveryResult{};
  });
  const RecoveryResult thrown = s.attempt(context("high_memory_usage"), ops);
  EXPECT_FALSE(thrown.success);
  EXPECT_EQ(thrown.reason, "strategy_threw");
  EXPECT_EQ(thrown.error, "bug in a strategy");
  s.add("disk_full", nullptr);
  EXPECT_FALSE(s.has("disk_full"));
}

// --- diagnose ---------------------------------------------------------------------------------

Symptoms with_error(ErrorType t, HealthState h = HealthState::unknown) {
  Symptoms s;
  s.error_type = t;
  s.health = h;
  return s;
}
Symptoms with_metric(const std::string& name, double value) {
  Symptoms s;
  s.metrics[name] = value;
  return s;
}

TEST(Diagnose, SpecificationTable) {
  EXPECT_EQ(diagnose(with_error(ErrorType::memory_exhausted)), "high_memory_usage");
  EXPECT_EQ(diagnose(with_error(ErrorType::connection_pool_exhausted)),
            "connection_pool_exhausted");
  EXPECT_EQ(diagnose(with_error(ErrorType::database_error)), "database_connection_lost");
  EXPECT_EQ(diagnose(with_error(ErrorType::service_unavailable)), "service_unresponsive");
  EXPECT_EQ(diagnose(with_error(ErrorType::network_timeout, HealthState::unhealthy)),
            "service_unresponsive");
  Symptoms unhealthy;
  unhealthy.health = HealthState::unhealthy;
  EXPECT_EQ(diagnose(unhealthy), "service_unresponsive");
}

TEST(Diagnose, NothingToHeal) {
  EXPECT_EQ(diagnose(Symptoms{}), std::nullopt);
  EXPECT_EQ(diagnose(with_error(ErrorType::network_timeout, HealthState::healthy)), std::nullopt);
  EXPECT_EQ(diagnose(with_error(ErrorType::network_timeout, HealthState::degraded)), std::nullopt);
  EXPECT_EQ(diagnose(with_error(ErrorType::validation_failed)), std::nullopt);
  EXPECT_EQ(diagnose(with_error(ErrorType::disk_full)), std::nullopt);
}

TEST(Diagnose, MemoryMetricThreshold) {
  EXPECT_EQ(diagnose(with_metric("memory_percent", 90.0)), "high_memory_usage");
  EXPECT_EQ(diagnose(with_metric("memory_percent", 89.9)), std::nullopt);
  DiagnosisOptions o;
  o.memory_percent_threshold = 80;
  EXPECT_EQ(diagnose(with_metric("memory_percent", 85), o), "high_memory_usage");
  EXPECT_EQ(diagnose(with_metric("memory_percent", std::nan(""))), std::nullopt);
}

TEST(Diagnose, PoolMetrics) {
  EXPECT_EQ(diagnose(with_metric("pool_use", 0.95)), "connection_pool_exhausted");
  EXPECT_EQ(diagnose(with_metric("pool_use", 0.94)), std::nullopt);
  Symptoms s;
  s.metrics = {{"pool_in_use", 19}, {"pool_size", 20}};
  EXPECT_EQ(diagnose(s), "connection_pool_exhausted");
  s.metrics = {{"pool_in_use", 18}, {"pool_size", 20}};
  EXPECT_EQ(diagnose(s), std::nullopt);
  s.metrics = {{"pool_in_use", 18}, {"pool_size", 0}};  // no division by zero
  EXPECT_EQ(diagnose(s), std::nullopt);
  s.metrics = {{"pool_in_use", 18}};
  EXPECT_EQ(diagnose(s), std::nullopt);
}

TEST(Diagnose, FirstRowWins) {
  Symptoms s = with_error(ErrorType::database_error, HealthState::unhealthy);
  EXPECT_EQ(diagnose(s), "database_connection_lost");
  s.metrics["memory_percent"] = 97;
  EXPECT_EQ(diagnose(s), "high_memory_usage");
}

// --- restart intensity --------------------------------------------------------------------------

TEST(RestartIntensity, OtpDefaultOneInFiveSeconds) {
  ManualClock clock;
  RestartIntensity intensity;
  const TimePoint t0 = clock.now();
  EXPECT_TRUE(intensity.try_record(t0));
  EXPECT_EQ(intensity.recent(t0), 1);
  EXPECT_FALSE(intensity.try_record(t0 + seconds(1)));  // second within 5 s: refused
  EXPECT_EQ(intensity.recent(t0 + seconds(1)), 1);      // a refusal records nothing
  EXPECT_EQ(intensity.recent(t0 + seconds(6)), 0);
  EXPECT_TRUE(intensity.try_record(t0 + seconds(6)));
}

TEST(RestartIntensity, PeriodIsInclusiveAsInOtp) {
  ManualClock clock;
  RestartIntensity intensity;
  const TimePoint t0 = clock.now();
  ASSERT_TRUE(intensity.try_record(t0));
  EXPECT_FALSE(intensity.try_record(t0 + seconds(5)));
  EXPECT_TRUE(intensity.try_record(t0 + seconds(5) + milliseconds(1)));
}

TEST(RestartIntensity, SystemdLikeFiveInTen) {
  ManualClock clock;
  RestartIntensity intensity({.max_restarts = 5, .period = seconds(10)});
  const TimePoint t0 = clock.now();
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(intensity.try_record(t0 + seconds(i)));
  EXPECT_FALSE(intensity.try_record(t0 + seconds(9)));
  EXPECT_EQ(intensity.recent(t0 + seconds(9)), 5);
  EXPECT_TRUE(intensity.try_record(t0 + seconds(11)));  // the one at t0+0 has left the window
  EXPECT_EQ(intensity.recent(t0 + seconds(11)), 5);
}

TEST(RestartIntensity, ZeroMeansNeverAndBadOptionsThrow) {
  RestartIntensity never({.max_restarts = 0, .period = seconds(5)});
  EXPECT_FALSE(never.try_record(TimePoint(seconds(100))));
  EXPECT_THROW(RestartIntensity({.max_restarts = -1, .period = seconds(5)}), std::invalid_argument);
  try {
    RestartIntensity bad({.max_restarts = 1, .period = seconds(0)});
    FAIL() << "accepted a zero period";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("period"), std::string::npos);
  }
}

// --- SelfHealer ---------------------------------------------------------------------------------

TEST(SelfHealer, RecoversWhenStrategyWorksAndProbeIsHealthy) {
  ManualClock clock;
  SelfHealer healer;
  FakeOps ops;
  const HealingReport r =
      healer.heal("reviewer", with_error(ErrorType::memory_exhausted), ops, clock.now());
  EXPECT_EQ(r.agent, "reviewer");
  EXPECT_EQ(r.issue, "high_memory_usage");
  EXPECT_TRUE(r.recovery.success);
  EXPECT_EQ(r.health_after, HealthState::healthy);
  EXPECT_TRUE(r.recovered);
  EXPECT_FALSE(r.escalate);
  EXPECT_EQ(ops.calls, (Steps{"clear_caches", "restart(graceful)", "wait_until_ready", "probe"}));
  EXPECT_EQ(r.recovery.steps, ops.calls);
}

TEST(SelfHealer, DegradedAfterRecoveryCountsAsRecovered) {
  ManualClock clock;
  SelfHealer healer;
  FakeOps ops;
  ops.probe_result.reported = HealthState::degraded;
  const HealingReport r =
      healer.heal("db-agent", with_error(ErrorType::database_error), ops, clock.now());
  EXPECT_TRUE(r.recovered);
  EXPECT_EQ(r.health_after, HealthState::degraded);
}

TEST(SelfHealer, EscalatesWhenStillUnhealthy) {
  ManualClock clock;
  SelfHealer healer;
  FakeOps ops;
  ops.probe_result.reported = HealthState::unhealthy;
  ops.probe_result.detail = "event loop blocked";
  const HealingReport r =
      healer.heal("reviewer", with_error(ErrorType::service_unavailable), ops, clock.now());
  EXPECT_EQ(r.issue, "service_unresponsive");
  EXPECT_TRUE(r.recovery.success);  // the strategy itself ran fine
  EXPECT_EQ(r.recovery.reason, "still_unhealthy");
  EXPECT_EQ(r.recovery.error, "event loop blocked");
  EXPECT_EQ(r.health_after, HealthState::unhealthy);
  EXPECT_FALSE(r.recovered);
  EXPECT_TRUE(r.escalate);
}

TEST(SelfHealer, EscalatesWhenProbeIsNotAnsweredOrThrows) {
  ManualClock clock;
  FakeOps silent;
  silent.probe_result = ProbeResult{};
  HealingReport r =
      SelfHealer().heal("a", with_error(ErrorType::database_error), silent, clock.now());
  EXPECT_TRUE(r.escalate);
  EXPECT_EQ(r.recovery.error, "the agent did not answer the health probe");

  FakeOps throwing;
  throwing.probe_throws = true;
  r = SelfHealer().heal("a", with_error(ErrorType::database_error), throwing, clock.now());
  EXPECT_TRUE(r.escalate);
  EXPECT_EQ(r.health_after, HealthState::unhealthy);
  EXPECT_EQ(r.recovery.error, "probe exploded");
}

TEST(SelfHealer, EscalatesWhenStrategyFailsEvenIfProbeIsHealthy) {
  ManualClock clock;
  SelfHealer healer;
  FakeOps ops;
  ops.failing = {"reconnect_database"};
  const HealingReport r = healer.heal("a", with_error(ErrorType::database_error), ops, clock.now());
  EXPECT_FALSE(r.recovery.success);
  EXPECT_EQ(r.recovery.reason, "action_failed");
  EXPECT_EQ(r.health_after, HealthState::healthy);
  EXPECT_FALSE(r.recovered);
  EXPECT_TRUE(r.escalate);
  EXPECT_EQ(ops.calls, (Steps{"reconnect_database", "probe"}));
}

TEST(SelfHealer, NoIssueMeansNoStrategyAndEscalation) {
  ManualClock clock;
  SelfHealer healer;
  FakeOps ops;
  Symptoms s = with_error(ErrorType::validation_failed, HealthState::degraded);
  const HealingReport r = healer.heal("a", s, ops, clock.now());
  EXPECT_EQ(r.issue, std::nullopt);
  EXPECT_EQ(r.recovery.reason, "no_strategy");
  EXPECT_TRUE(r.escalate);
  EXPECT_EQ(r.health_after, HealthState::degraded);  // what was known; nothing was re-probed
  EXPECT_TRUE(ops.calls.empty());
  EXPECT_EQ(healer.recent_attempts("a", clock.now()), 0);  // no attempt was spent
}

TEST(SelfHealer, DiagnosedIssueWithoutStrategy) {
  ManualClock clock;
  SelfHealer healer({}, RecoveryStrategies());
  FakeOps ops;
  const HealingReport r =
      healer.heal("a", with_error(ErrorType::memory_exhausted), ops, clock.now());
  EXPECT_EQ(r.issue, "high_memory_usage");
  EXPECT_EQ(r.recovery.reason, "no_strategy");
  EXPECT_TRUE(r.escalate);
  EXPECT_TRUE(ops.calls.empty());
}

TEST(SelfHealer, RestartIntensityExceededEscalatesWithoutAction) {
  ManualClock clock;
  SelfHealer healer;
  FakeOps ops;
  const Symptoms s = with_error(ErrorType::service_unavailable);
  EXPECT_TRUE(healer.heal("a", s, ops, clock.now()).recovered);
  ops.calls.clear();

  clock.advance(seconds(1));
  const HealingReport refused = healer.heal("a", s, ops, clock.now());
  EXPECT_EQ(refused.recovery.reason, "restart_intensity_exceeded");
  EXPECT_EQ(refused.recovery.error, "more than 1 recovery attempt(s) within 5 s");
  EXPECT_TRUE(refused.escalate);
  EXPECT_FALSE(refused.recovered);
  EXPECT_TRUE(ops.calls.empty());

  // Another agent has its own budget.
  EXPECT_TRUE(healer.heal("b", s, ops, clock.now()).recovered);

  clock.advance(seconds(5));  // +6 s after the first
  EXPECT_TRUE(healer.heal("a", s, ops, clock.now()).recovered);
  EXPECT_EQ(healer.recent_attempts("a", clock.now()), 1);
}

TEST(SelfHealer, ReadyTimeoutComesFromOptions) {
  ManualClock clock;
  SelfHealingOptions o;
  o.ready_timeout = seconds(15);
  SelfHealer healer(o);
  FakeOps ops;
  (void)healer.heal("a", with_error(ErrorType::service_unavailable), ops, clock.now());
  EXPECT_EQ(ops.waited_for, std::vector<Duration>{seconds(15)});
}

TEST(SelfHealer, BadOptionsThrowAtConstruction) {
  SelfHealingOptions o;
  o.intensity.period = seconds(-5);
  EXPECT_THROW(SelfHealer{o}, std::invalid_argument);
}

TEST(HealingReportJson, ParsesAndCarriesEverything) {
  ManualClock clock;
  SelfHealer healer;
  FakeOps ops;
  ops.failing = {"wait_until_ready"};
  ops.probe_result.reported = HealthState::unhealthy;
  const HealingReport r =
      healer.heal("ag\"ent", with_error(ErrorType::service_unavailable), ops, clock.now());
  const nlohmann::json j = nlohmann::json::parse(r.to_json());
  EXPECT_EQ(j["agent"], "ag\"ent");
  EXPECT_EQ(j["issue"], "service_unresponsive");
  EXPECT_EQ(j["recovery"]["success"], true);
  EXPECT_EQ(j["recovery"]["action"], "service_force_restart");
  EXPECT_EQ(j["recovery"]["reason"], "still_unhealthy");
  EXPECT_EQ(j["recovery"]["steps"],
            nlohmann::json::parse(
                R"j(["restart(graceful)","wait_until_ready","restart(force)","probe"])j"));
  EXPECT_EQ(j["health_after"], "unhealthy");
  EXPECT_EQ(j["recovered"], false);
  EXPECT_EQ(j["escalate"], true);

  HealingReport none;
  none.agent = "x";
  const nlohmann::json n = nlohmann::json::parse(none.to_json());
  EXPECT_TRUE(n["issue"].is_null());
  EXPECT_FALSE(n["recovery"].contains("action"));
  EXPECT_EQ(n["recovery"]["steps"], nlohmann::json::array());
  EXPECT_EQ(n["health_after"], "unknown");
}

}  // namespace
}  // namespace mend
