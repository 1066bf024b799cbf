// What a generation is built from, derived from a configuration alone: each agent as the
// workflow sees it, the fallback chains, retry policies with budgets of their own, and the
// receivers. Configurations are parsed from YAML, as `mend serve` reads them. No daemon.
#include "generation_builder.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

#include "mend/core/random.h"
#include "mend/store/sqlite_store.h"
#include "mend_test/temp_dir.h"

namespace mend::server_detail {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;

Config config_of(const std::string& yaml) {
  ConfigLoad load = parse_config(yaml);
  std::string problems;
  for (const ConfigProblem& p : load.problems) problems += p.to_string() + "\n";
  EXPECT_TRUE(load.ok()) << problems;
  return load.ok() ? *load.config : Config{};
}

TEST(GenerationBuilderTest, AnAgentCarriesItsPoliciesAndTheLowerOfItsTwoConcurrencyLimits) {
  const Config config = config_of(R"(
policies:
  call_timeout: 20s
agents:
  - name: reviewer
    urls: [http://127.0.0.1:9101, http://127.0.0.1:9102]
    capabilities: [code_review]
    max_concurrent: 10
    policies:
      bulkhead: {max_concurrent: 4}
      rate_limit: {rate_per_second: 5, burst: 2}
      call_timeout: 3s
      breaker: {failure_threshold: 7}
      replica_balancing: {consecutive_failures: 2, max_ejection_percent: 0}
      hedging: {delay: 40ms, task_types: [code_review]}
  - name: generalist
    url: http://127.0.0.1:9103
    generalist: true
    policies:
      bulkhead: {max_concurrent: 6}
)");
  ASSERT_EQ(config.agents.size(), 2u);
  const AgentInfo reviewer = agent_info_of(config.agents[0], {"http://ignored"});
  EXPECT_EQ(reviewer.name, "reviewer");
  EXPECT_THAT(reviewer.capabilities, ElementsAre("code_review"));
  // A URL agent's replicas are its configured URLs, not mend's started ones.
  EXPECT_THAT(reviewer.endpoints, ElementsAre("http://127.0.0.1:9101", "http://127.0.0.1:9102"));
  EXPECT_EQ(reviewer.max_concurrent, 4);
  ASSERT_TRUE(reviewer.rate_limit.has_value());
  EXPECT_EQ(reviewer.rate_limit->rate_per_second, 5);
  EXPECT_EQ(reviewer.call_timeout, 3s);
  EXPECT_EQ(reviewer.breaker.failure_threshold, 7);
  EXPECT_EQ(reviewer.replica_balancing.consecutive_failures, 2);
  EXPECT_EQ(reviewer.replica_balancing.max_ejection_percent, 0);
  // The task API hedges with it (mend/core/workflow.h), as the relay does.
  ASSERT_TRUE(reviewer.hedging.has_value());
  EXPECT_EQ(reviewer.hedging->delay, std::optional<Duration>(40ms));
  EXPECT_THAT(reviewer.hedging->task_types, ElementsAre("code_review"));

  const AgentInfo generalist = agent_info_of(config.agents[1], {});
  EXPECT_TRUE(generalist.generalist);
  EXPECT_EQ(generalist.max_concurrent, 6);  // unlimited by itself: the bulkhead's
  EXPECT_FALSE(generalist.rate_limit.has_value());
  EXPECT_EQ(generalist.call_timeout, 20s);                          // the global one
  EXPECT_EQ(generalist.replica_balancing.consecutive_failures, 5);  // ReplicaBalancerOptions'
  EXPECT_FALSE(generalist.hedging.has_value());
}

TEST(GenerationBuilderTest, AScaledAgentsConcurrencyLimitFollowsItsReplicasInService) {
  const Config config = config_of(R"(
agents:
  - name: reviewer
    command: reviewer
    replicas: {min: 1, max: 4}
    scaling: {replica_capacity: 3}
    max_concurrent: 10
  - name: unbounded
    command: unbounded
    replicas: {min: 1, max: 2}
)");
  ASSERT_EQ(config.agents.size(), 2u);
  const AgentConfig& reviewer = config.agents[0];
  EXPECT_EQ(agent_info_of(reviewer, {"http://a"}).max_concurrent, 3);
  EXPECT_EQ(agent_info_of(reviewer, {"http://a", "http://b"}).max_concurrent, 6);
  // At most max_concurrent, whatever the replicas.
  EXPECT_EQ(
      agent_info_of(reviewer, {"http://a", "http://b", "http://c", "http://d"}).max_concurrent, 10);
  // Without a capacity, no limit but the configured ones.
  EXPECT_EQ(agent_info_of(config.agents[1], {"http://a", "http://b"}).max_concurrent, 0);
}

TEST(GenerationBuilderTest, ASupervisedAgentsReplicasAreWhereMendStartedThem) {
  const Config config = config_of(R"(
agents:
  - name: worker
    command: sleep {port}
    replicas: 2
)");
  ASSERT_EQ(config.agents.size(), 1u);
  const AgentInfo worker =
      agent_info_of(config.agents[0], {"http://127.0.0.1:41001", "http://127.0.0.1:41002"});
  EXPECT_THAT(worker.endpoints, ElementsAre("http://127.0.0.1:41001", "http://127.0.0.1:41002"));
  EXPECT_EQ(worker.max_concurrent, 0);
}

TEST(GenerationBuilderTest, ConfiguredChainsReplaceTheDefaultOnesTheyName) {
  Config config = config_of(R"(
default_fallback_chains: true
agents:
  - name: a
    url: http://127.0.0.1:9101
  - name: b
    url: http://127.0.0.1:9102
fallback_chains:
  a: [b]
)");
  auto chains = fallback_chains_of(config);
  EXPECT_THAT(chains.at("a"), ElementsAre("b"));
  for (const auto& [agent, chain] : default_fallback_chains()) {
    EXPECT_EQ(chains.at(agent), chain) << agent;
  }
  config.default_fallback_chains = false;
  chains = fallback_chains_of(config);
  EXPECT_EQ(chains.size(), 1u);
}

TEST(GenerationBuilderTest, EachAgentsRetryBudgetIsItsOwn) {
  const Config config = config_of(R"(
policies:
  retry: {max_retries: 2}
  retry_budget: {ratio: 0, min_retries_per_second: 1}
agents:
  - name: a
    url: http://127.0.0.1:9101
  - name: b
    url: http://127.0.0.1:9102
    policies:
      retry: {max_retries: 5}
  - name: c
    url: http://127.0.0.1:9103
    policies:
      retry_budget: false
)");
  const WorkflowOptions options = workflow_options_of(config);
  EXPECT_EQ(options.retry.max_retries, 2);
  ASSERT_NE(options.retry.budget, nullptr);
  ASSERT_EQ(options.agent_retry.size(), 3u);
  EXPECT_EQ(options.agent_retry.at("a").max_retries, 2);
  EXPECT_EQ(options.agent_retry.at("b").max_retries, 5);
  const auto& a_budget = options.agent_retry.at("a").budget;
  const auto& b_budget = options.agent_retry.at("b").budget;
  ASSERT_NE(a_budget, nullptr);
  ASSERT_NE(b_budget, nullptr);
  // Spending a's budget leaves b's (and the global one) whole.
  EXPECT_NE(a_budget, b_budget);
  EXPECT_NE(a_budget, options.retry.budget);
  const TimePoint now{};
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(a_budget->try_acquire_retry(RetryCost::plain, now));
  EXPECT_FALSE(a_budget->try_acquire_retry(RetryCost::plain, now));
  EXPECT_TRUE(b_budget->try_acquire_retry(RetryCost::plain, now));
  EXPECT_EQ(options.agent_retry.at("c").budget, nullptr);
  // The sinks are the caller's to set.
  EXPECT_EQ(options.degraded, nullptr);
  EXPECT_EQ(options.escalations, nullptr);
}

TEST(GenerationBuilderTest, EveryConfiguredReceiverIsAddedUnderItsName) {
  mend::testing::TempDir dir("mend-generation");
  const Config config = config_of(R"(
agents:
  - name: a
    url: http://127.0.0.1:9101
escalation:
  receivers:
    - name: team-webhook
      kind: webhook
      url: http://127.0.0.1:9/hook
    - name: chat
      kind: slack
      url: http://127.0.0.1:9/slack
    - name: pager
      kind: pagerduty
      routing_key: abc
    - name: audit
      kind: file
      path: )" + dir.file("audit.jsonl") +
                                  R"(
)");
  auto store = SqliteStore::open(dir.file("mend.db"));
  ASSERT_TRUE(store.ok()) << store.error().describe();
  ManualClock clock;
  SeededRandom random(3);
  NotificationDispatcher dispatcher(**store, clock, random);
  boost::asio::io_context io;
  HttpClient http(io.get_executor());
  add_receivers(dispatcher, config.escalation.receivers, http);
  for (const char* name : {"team-webhook", "chat", "pager", "audit"}) {
    EXPECT_TRUE(dispatcher.has_receiver(name)) << name;
  }
  EXPECT_FALSE(dispatcher.has_receiver("nobody"));
}

}  // namespace
}  // namespace mend::server_detail
