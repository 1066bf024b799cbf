// What a key left out becomes: the specification's defaults, and for an agent's own policies
// the global ones, merged field by field.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "config_test_support.h"
#include "mend/server/config.h"

namespace mend {
namespace {

using config_test_support::kOneAgent;
using config_test_support::parse;
using config_test_support::problems;
using std::chrono::hours;
using std::chrono::minutes;
using std::chrono::seconds;
using ::testing::ElementsAre;

// --- Defaults ----------------------------------------------------------------------------------

TEST(ConfigDefaults, AreTheSpecifications) {
  ConfigLoad load = parse(kOneAgent);
  ASSERT_THAT(problems(load), ElementsAre());
  EXPECT_THAT(load.warnings, ElementsAre());
  const Config& c = *load.config;

  const PolicyConfig& p = c.policies;
  EXPECT_EQ(p.retry.max_retries, 3);
  EXPECT_EQ(p.retry.backoff.kind, BackoffKind::error_scaled);
  EXPECT_EQ(p.retry.backoff.base, seconds(1));
  EXPECT_EQ(p.retry.backoff.cap, seconds(60));
  EXPECT_DOUBLE_EQ(p.retry.backoff.jitter, 0.25);
  EXPECT_EQ(p.retry.retryable, default_retryable_types());
  EXPECT_TRUE(p.retry.honor_retry_after);
  EXPECT_EQ(p.breaker.mode, BreakerMode::consecutive);
  EXPECT_EQ(p.breaker.failure_threshold, 5);
  EXPECT_EQ(p.breaker.recovery_timeout, seconds(60));
  EXPECT_EQ(p.breaker.success_threshold, 3);
  EXPECT_FALSE(p.retry_budget.has_value());
  EXPECT_FALSE(p.bulkhead.has_value());
  EXPECT_FALSE(p.rate_limit.has_value());
  EXPECT_EQ(p.call_timeout, seconds(30));

  EXPECT_EQ(c.escalation.policy.medium_sla, hours(24));
  EXPECT_EQ(c.escalation.policy.high_sla, hours(2));
  EXPECT_EQ(c.escalation.policy.critical_sla, minutes(15));
  EXPECT_EQ(c.escalation.policy.team_channel, "engineering");
  EXPECT_TRUE(c.escalation.receivers.empty());

  ASSERT_EQ(c.agents.size(), 1u);
  const AgentConfig& a = c.agents[0];
  EXPECT_FALSE(a.supervised());
  EXPECT_THAT(a.urls, ElementsAre("http://127.0.0.1:9001"));
  EXPECT_EQ(a.replicas, 1);
  EXPECT_EQ(a.working_dir, "");  // only agents mend starts have one
  for (const ProbeOptions* probe : {&a.probes.readiness, &a.probes.liveness}) {
    EXPECT_EQ(probe->period, seconds(10));
    EXPECT_EQ(probe->timeout, seconds(1));
    EXPECT_EQ(probe->failure_threshold, 3);
    EXPECT_EQ(probe->success_threshold, 1);
  }
  EXPECT_EQ(a.probes.startup.period, seconds(10));
  EXPECT_EQ(a.probes.startup.failure_threshold, 30);
  EXPECT_EQ(a.probes.path, "/health");
  EXPECT_EQ(a.policies.retry.max_retries, 3);
  EXPECT_EQ(a.policies.breaker.failure_threshold, 5);

  EXPECT_EQ(c.server.address, "127.0.0.1");
  EXPECT_EQ(c.server.port, 7070);
  EXPECT_EQ(c.store.path, "/srv/mend/mend.db");
  EXPECT_FALSE(c.default_fallback_chains);
  EXPECT_EQ(c.supervision.ready_timeout, seconds(60));
  EXPECT_EQ(c.degradation.default_estimated_recovery, "5-10 minutes");
}

TEST(ConfigDefaults, UrlsSetReplicas) {
  ConfigLoad load = parse(
      "agents:\n"
      "  - name: a\n"
      "    urls: [\"http://127.0.0.1:1\", \"http://127.0.0.1:2\", \"https://[::1]:3/x\"]\n");
  ASSERT_THAT(problems(load), ElementsAre());
  EXPECT_EQ(load.config->agents[0].replicas, 3);
  EXPECT_EQ(load.config->agents[0].urls.size(), 3u);
}

// --- Per-agent policies ------------------------------------------------------------------------

TEST(AgentPolicies, MergeFieldByFieldOverTheGlobalOnes) {
  ConfigLoad load = parse(
      "policies:\n"
      "  retry: {max_retries: 5, backoff: {cap: 30s, kind: full_jitter}}\n"
      "  bulkhead: {max_concurrent: 4}\n"
      "agents:\n"
      "  - name: b\n"
      "    url: http://127.0.0.1:1\n"
      "    policies:\n"
      "      retry: {backoff: {base: 2s}}\n"
      "      breaker: {failure_threshold: 10}\n"
      "      bulkhead: {max_queue: 7}\n"
      "      rate_limit: {rate_per_second: 20}\n"
      "  - name: c\n"
      "    url: http://127.0.0.1:2\n");
  ASSERT_THAT(problems(load), ElementsAre());
  const Config& c = *load.config;
  const PolicyConfig& b = c.agent("b")->policies;
  EXPECT_EQ(b.retry.max_retries, 5);                          // global
  EXPECT_EQ(b.retry.backoff.kind, BackoffKind::full_jitter);  // global
  EXPECT_EQ(b.retry.backoff.cap, seconds(30));                // global
  EXPECT_EQ(b.retry.backoff.base, seconds(2));                // the agent's
  EXPECT_EQ(b.breaker.failure_threshold, 10);                 // the agent's
  EXPECT_EQ(b.breaker.recovery_timeout, seconds(60));         // the specification's default
  ASSERT_TRUE(b.bulkhead.has_value());
  EXPECT_EQ(b.bulkhead->max_concurrent, 4);  // global
  EXPECT_EQ(b.bulkhead->max_queue, 7);       // the agent's
  ASSERT_TRUE(b.rate_limit.has_value());
  EXPECT_DOUBLE_EQ(b.rate_limit->rate_per_second, 20);
  EXPECT_DOUBLE_EQ(b.rate_limit->burst, 100);  // RateLimiterOptions' default

  const PolicyConfig& plain = c.agent("c")->policies;
  EXPECT_EQ(plain.retry.backoff.base, seconds(1));
  EXPECT_EQ(plain.breaker.failure_threshold, 5);
  EXPECT_EQ(plain.bulkhead->max_queue, 0);
  EXPECT_FALSE(plain.rate_limit.has_value());
  // The global policies stay as written.
  EXPECT_EQ(c.policies.retry.backoff.base, seconds(1));
  EXPECT_FALSE(c.policies.rate_limit.has_value());
}

TEST(AgentPolicies, FalseTurnsOffAGlobalPolicy) {
  ConfigLoad load = parse(
      "policies:\n"
      "  bulkhead: {max_concurrent: 4}\n"
      "  retry_budget: {}\n"
      "agents:\n"
      "  - {name: b, url: \"http://127.0.0.1:1\", policies: {bulkhead: false}}\n");
  ASSERT_THAT(problems(load), ElementsAre());
  EXPECT_FALSE(load.config->agents[0].policies.bulkhead.has_value());
  ASSERT_TRUE(load.config->agents[0].policies.retry_budget.has_value());
  EXPECT_DOUBLE_EQ(load.config->agents[0].policies.retry_budget->ratio, 0.5);
  EXPECT_DOUBLE_EQ(load.config->agents[0].policies.retry_budget->overload_cost, 5);
}

TEST(AgentPolicies, AGlobalMistakeIsReportedOnceNotPerAgent) {
  ConfigLoad load = parse(
      "policies:\n"
      "  retry: {backoff: {base: 2m, cap: 1m}}\n"
      "agents:\n"
      "  - {name: a, url: \"http://127.0.0.1:1\"}\n"
      "  - {name: b, url: \"http://127.0.0.1:2\", policies: {retry: {max_retries: 1}}}\n"
      "  - {name: c, url: \"http://127.0.0.1:3\", policies: {retry: {backoff: {cap: 30s}}}}\n");
  EXPECT_THAT(problems(load),
              ElementsAre("2:3: policies.retry: backoff base (2m) is above its cap (1m)",
                          "6:53: agents[2].policies.retry: backoff base (2m) is above its cap "
                          "(30s)"));
  EXPECT_FALSE(load.ok());
}

}  // namespace
}  // namespace mend
