// The example configuration shipped with mend (examples/mend.yaml): it loads without problems
// or warnings, and to the values it writes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "config_test_support.h"
#include "mend/server/config.h"

namespace mend {
namespace {

namespace fs = std::filesystem;
using config_test_support::kSourceDir;
using config_test_support::problems;
using std::chrono::minutes;
using std::chrono::seconds;
using ::testing::ElementsAre;

TEST(ExampleConfig, LoadsWithoutProblems) {
  const std::string path = kSourceDir + "/examples/mend.yaml";
  ConfigLoad load = load_config_file(path);
  ASSERT_THAT(problems(load), ElementsAre());
  ASSERT_TRUE(load.ok());
  EXPECT_THAT(load.warnings, ElementsAre()) << "the example uses no former names";
  const Config& c = *load.config;
  const std::string dir = (fs::path(kSourceDir) / "examples").lexically_normal().string();

  EXPECT_EQ(c.source_path, path);
  EXPECT_EQ(c.server.address, "127.0.0.1");
  EXPECT_EQ(c.server.port, 7070);
  EXPECT_EQ(c.server.token, "");
  EXPECT_EQ(c.server.max_body_bytes, std::size_t{1} << 20);
  EXPECT_EQ(c.server.threads, 2u);
  EXPECT_EQ(c.server.task_deadline, minutes(5));
  EXPECT_EQ(c.server.max_wait_seconds, 300u);
  EXPECT_EQ(c.store.path, dir + "/mend.db");

  ASSERT_EQ(c.agents.size(), 5u);
  std::vector<std::string> names;
  for (const AgentConfig& a : c.agents) names.push_back(a.name);
  EXPECT_THAT(names, ElementsAre("senior-frontend-developer", "senior-backend-developer",
                                 "senior-full-stack-developer", "ollama-integration-specialist",
                                 "agentzero-coordinator"));
  const AgentConfig& frontend = c.agents[0];
  EXPECT_TRUE(frontend.supervised());
  EXPECT_EQ(frontend.command, "mend-sample-agent");
  EXPECT_THAT(frontend.args,
              ElementsAre("--port", "{port}", "--name", "senior-frontend-developer"));
  EXPECT_EQ(frontend.working_dir, dir);
  EXPECT_EQ(frontend.replicas, 2);
  EXPECT_EQ(frontend.max_concurrent, 8);
  EXPECT_EQ(frontend.memory_limit_bytes, std::size_t{512} << 20);
  EXPECT_EQ(frontend.stop_timeout, seconds(10));
  EXPECT_EQ(frontend.probes.startup.period, seconds(1));
  EXPECT_EQ(frontend.probes.startup.failure_threshold, 30);
  EXPECT_EQ(c.agents[1].env.at("LOG_LEVEL"), "info");
  EXPECT_TRUE(c.agent("agentzero-coordinator")->generalist);
  EXPECT_FALSE(frontend.generalist);

  // Global policies, and the ollama agent's merged over them.
  EXPECT_EQ(c.policies.retry.max_retries, 3);
  ASSERT_TRUE(c.policies.retry_budget.has_value());
  EXPECT_EQ(c.policies.retry_budget->min_retries_in_flight, 3);
  const PolicyConfig& ollama = c.agent("ollama-integration-specialist")->policies;
  EXPECT_EQ(ollama.retry.max_retries, 2);
  EXPECT_EQ(ollama.retry.backoff.base, seconds(2));
  EXPECT_EQ(ollama.retry.backoff.cap, seconds(60));
  EXPECT_EQ(ollama.breaker.mode, BreakerMode::failure_rate);
  EXPECT_EQ(ollama.breaker.window, WindowKind::time);
  EXPECT_EQ(ollama.breaker.minimum_calls, 20);
  EXPECT_EQ(ollama.breaker.slow_call_threshold, seconds(45));
  EXPECT_DOUBLE_EQ(ollama.breaker.slow_call_rate_threshold, 0.8);
  ASSERT_TRUE(ollama.retry_budget.has_value());  // inherited
  EXPECT_DOUBLE_EQ(ollama.retry_budget->ratio, 0.5);
  EXPECT_EQ(ollama.retry_budget->min_retries_in_flight, 3);
  ASSERT_TRUE(ollama.bulkhead.has_value());
  EXPECT_EQ(ollama.bulkhead->max_queue, 10);
  EXPECT_EQ(ollama.bulkhead->max_wait, seconds(5));
  ASSERT_TRUE(ollama.rate_limit.has_value());
  EXPECT_DOUBLE_EQ(ollama.rate_limit->rate_per_second, 5);
  EXPECT_EQ(ollama.call_timeout, seconds(120));
  EXPECT_FALSE(frontend.policies.bulkhead.has_value());
  EXPECT_EQ(frontend.policies.call_timeout, seconds(30));

  ASSERT_EQ(c.classifier_rules.size(), 3u);
  EXPECT_EQ(c.classifier_rules[0].kind, "model_loading");
  EXPECT_EQ(c.classifier_rules[1].status, 507);
  EXPECT_EQ(c.classifier_rules[1].type, "disk_full");
  EXPECT_THAT(c.classifier_rules[2].keywords, ElementsAre("quota exceeded", "too many tokens"));

  EXPECT_TRUE(c.default_fallback_chains);
  EXPECT_THAT(c.fallback_chains.at("senior-full-stack-developer"),
              ElementsAre("senior-backend-developer", "senior-frontend-developer",
                          "agentzero-coordinator"));
  EXPECT_EQ(c.degradation.deployment_steps[0], "1. Run tests manually: make test");

  const EscalationConfig& e = c.escalation;
  EXPECT_EQ(e.policy.critical_sla, minutes(15));
  EXPECT_EQ(e.policy.oncall_channel, "on-call");
  ASSERT_EQ(e.receivers.size(), 2u);
  EXPECT_EQ(e.receivers[0].kind, "webhook");
  EXPECT_EQ(e.receivers[0].headers.at("X-Team"), "platform");
  EXPECT_EQ(e.receivers[1].kind, "file");
  EXPECT_EQ(e.receivers[1].path, dir + "/mend-notifications.jsonl");
  EXPECT_THAT(e.routes.at("emergency"), ElementsAre("team-webhook", "audit-log"));
  EXPECT_EQ(c.supervision.intensity_max_restarts, 5);
  EXPECT_EQ(c.supervision.restart_backoff_max, minutes(5));
}

}  // namespace
}  // namespace mend
