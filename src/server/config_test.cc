#include "mend/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "mend_test/paths.h"
#include "mend_test/temp_dir.h"

namespace mend {
namespace {

namespace fs = std::filesystem;
using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr const char* kBaseDir = "/srv/mend";
// One valid agent, for documents that test something else.
constexpr const char* kOneAgent = "agents:\n  - {name: a, url: \"http://127.0.0.1:9001\"}\n";

ConfigLoad parse(const std::string& yaml) {
  return parse_config(yaml, "test.yaml", kBaseDir);
}

// Each problem as `mend check-config` prints it after the file name: "line:col: key: message".
std::vector<std::string> problems(const ConfigLoad& load) {
  std::vector<std::string> out;
  for (ConfigProblem p : load.problems) {
    p.file.clear();
    out.push_back(p.to_string());
  }
  return out;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

const std::string kSourceDir = testing::kSourceDir;

// --- The example -------------------------------------------------------------------------------

TEST(ExampleConfig, LoadsWithoutProblems) {
  const std::string path = kSourceDir + "/examples/mend.yaml";
  ConfigLoad load = load_config_file(path);
  ASSERT_THAT(problems(load), ElementsAre());
  ASSERT_TRUE(load.ok());
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
  EXPECT_DOUBLE_EQ(ollama.retry_budget->max_tokens, 100);
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

  EXPECT_TRUE(c.seed_fallback_chains);
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

// --- Defaults ----------------------------------------------------------------------------------

TEST(ConfigDefaults, AreTheSeeds) {
  ConfigLoad load = parse(kOneAgent);
  ASSERT_THAT(problems(load), ElementsAre());
  const Config& c = *load.config;

  const PolicyConfig& p = c.policies;
  EXPECT_EQ(p.retry.max_retries, 3);
  EXPECT_EQ(p.retry.backoff.kind, BackoffKind::seed);
  EXPECT_EQ(p.retry.backoff.base, seconds(1));
  EXPECT_EQ(p.retry.backoff.cap, seconds(60));
  EXPECT_DOUBLE_EQ(p.retry.backoff.jitter, 0.25);
  EXPECT_EQ(p.retry.retryable, seed_retryable_types());
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
  EXPECT_FALSE(c.seed_fallback_chains);
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
  EXPECT_EQ(b.breaker.recovery_timeout, seconds(60));         // seed default
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
  EXPECT_DOUBLE_EQ(load.config->agents[0].policies.retry_budget->max_tokens, 100);
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

// --- Problems: one of each kind, with its line, column and key --------------------------------

struct ProblemCase {
  std::string yaml;
  std::string expected;  // "line:col: key: message"
};

// Each case's YAML gives exactly one problem, the expected one. An expected text that ends in a
// space is a prefix: the rest varies with the build (the exception case lists registered names).
void expect_one_problem_each(const std::vector<ProblemCase>& cases) {
  for (const ProblemCase& c : cases) {
    SCOPED_TRACE(c.yaml);
    ConfigLoad load = parse(c.yaml);
    EXPECT_FALSE(load.ok());
    std::vector<std::string> found = problems(load);
    ASSERT_EQ(found.size(), 1u) << ::testing::PrintToString(found);
    EXPECT_EQ(found[0].substr(0, c.expected.size()), c.expected);
    if (c.expected.back() != ' ') {
      EXPECT_EQ(found[0], c.expected);
    }
  }
}

TEST(ConfigProblems, EachKindNamesLineColumnKeyAndWhatWasExpected) {
  const std::string agent = kOneAgent;
  const std::vector<ProblemCase> cases = {
      {"agentz: []\n" + agent, "1:1: agentz: unknown key 'agentz' (did you mean 'agents'?)"},
      {"server:\n  port: abc\n" + agent, "2:9: server.port: expected an integer, got 'abc'"},
      {"server:\n  port: \"7070\"\n" + agent,
       "2:9: server.port: expected an integer, got the quoted string '7070' (numbers and "
       "booleans are written without quotes)"},
      {"server:\n  port: 70000\n" + agent,
       "2:9: server.port: must be between 0 and 65535, got 70000"},
      {"server:\n  threads: 2.5\n" + agent, "2:12: server.threads: expected an integer, got '2.5'"},
      {"server: {address: localhost}\n" + agent,
       "1:19: server.address: expected an IP address such as 127.0.0.1, 0.0.0.0 or ::1 (not a "
       "host name), got 'localhost'"},
      {"server: {token: abc, token_env: HOME}\n" + agent,
       "1:22: server.token_env: give either token or token_env, not both"},
      {"server: [1]\n" + agent, "1:9: server: expected a mapping, got a list"},
      {"server:\n  read_timeout: 10 seconds\n" + agent,
       "2:17: server.read_timeout: expected a duration such as 250ms, 1.5s, 10m, 2h, 1d or a "
       "number of seconds, got '10 seconds'"},
      {"server:\n  read_timeout: -5s\n" + agent,
       "2:17: server.read_timeout: must not be negative, got -5s"},
      {"server:\n  task_deadline: 0\n" + agent,
       "2:18: server.task_deadline: must be greater than zero, got 0"},
      {"server:\n  task_deadline: 400d\n" + agent,
       "2:18: server.task_deadline: must be at most 365d (one year), got 400d"},
      {"server:\n  max_body_bytes: 1 GB\n" + agent,
       "2:19: server.max_body_bytes: expected a size such as 512MiB, 64KiB, 1GB or a number of "
       "bytes, got '1 GB'"},
      {"server:\n  port: 1\n  port: 2\n" + agent,
       "3:3: server.port: duplicate key 'port' (first at line 2)"},
      {"policies:\n  breaker: {mode: failure-rate}\n" + agent,
       "2:19: policies.breaker.mode: unknown breaker mode 'failure-rate' (did you mean "
       "'failure_rate'?)"},
      {"policies:\n  breaker: {failure_rate_threshold: 50}\n" + agent,
       "2:37: policies.breaker.failure_rate_threshold: must be in (0, 1] (a fraction: 0.5 is 50 "
       "%), got 50"},
      {"policies:\n  breaker: {mode: failure_rate, window_size: 10}\n" + agent,
       "2:3: policies.breaker: minimum_calls (100) must not exceed window_size (10), or the "
       "circuit could never open"},
      {"policies:\n  retry:\n    retryable: [timeout]\n" + agent,
       "3:17: policies.retry.retryable[0]: unknown error type 'timeout' (expected one of: "
       "network_timeout, connection_reset, rate_limit_exceeded, temporary_unavailable, "
       "memory_exhausted, cpu_overload, disk_full, connection_pool_exhausted, validation_failed, "
       "processing_failed, data_corruption, business_rule_violation, service_unavailable, "
       "database_error, configuration_error, security_error, api_error, authentication_failed, "
       "authorization_failed, external_service_down)"},
      {"policies:\n  retry:\n    honor_retry_after: maybe\n" + agent,
       "3:24: policies.retry.honor_retry_after: expected true or false, got 'maybe'"},
      {"policies:\n  rate_limit: {burst: 0.5}\n" + agent,
       "2:23: policies.rate_limit.burst: must be at least 1, got 0.5"},
      {"policies:\n  bulkhead: 3\n" + agent,
       "2:13: policies.bulkhead: expected a mapping (or false for none), got '3'"},
      {"classifier:\n  rules:\n    - {status: 503, type: temporary_unavalable}\n" + agent,
       "3:27: classifier.rules[0].type: unknown error type 'temporary_unavalable' (did you mean "
       "'temporary_unavailable'?)"},
      {"classifier:\n  rules:\n    - {status: 99, type: api_error}\n" + agent,
       "3:16: classifier.rules[0].status: must be between 100 and 599, got 99"},
      {"classifier:\n  rules:\n    - {status: 503, keywords: [x], type: api_error}\n" + agent,
       "3:31: classifier.rules[0].keywords: cannot be combined with exception, kind, status or "
       "errno"},
      {"classifier:\n  rules:\n    - {exception: MyError, type: api_error}\n" + agent,
       "3:19: classifier.rules[0].exception: unknown exception \"MyError\" (registered: "},
      {"agents:\n  - name: a\n",
       "2:5: agents[0]: an agent needs one of url, urls (an agent mend "
       "reaches) or command (one mend starts)"},
      {"agents:\n  - name: a\n    url: http://127.0.0.1:1\n    command: x\n",
       "4:5: agents[0].command: give only one of url, urls and command"},
      {"agents:\n  - name: a\n    url: 127.0.0.1:8101\n",
       "3:10: agents[0].url: invalid URL \"127.0.0.1:8101\": no scheme (expected http:// or "
       "https://)"},
      {"agents:\n  - name: a\n    urls: [\"http://h:1\", \"http://h:2\"]\n    replicas: 3\n",
       "4:15: agents[0].replicas: must equal the number of URLs (2) for an agent reached by URL, "
       "got 3 (or leave replicas out)"},
      {"agents:\n  - name: a\n    command: x\n    replicas: 0\n",
       "4:15: agents[0].replicas: must be between 1 and 1000, got 0"},
      {"agents:\n  - name: Big Agent\n    url: http://h:1\n",
       "2:11: agents[0].name: an agent name is 1 to 100 characters from a-z, 0-9, '-', '_' and "
       "'.', got 'Big Agent'"},
      {"agents:\n  - {name: a, url: \"http://h:1\"}\n  - {name: a, command: x}\n",
       "3:5: agents[1]: duplicate agent name 'a' (first at line 2)"},
      {"agents:\n  - name: a\n    url: http://h:1\n    args: [-v]\n",
       "4:5: agents[0].args: 'args' applies only to an agent that mend starts (with a command)"},
      {"agents:\n  - name: a\n    command: x\n    env: {PORT: \"80\"}\n",
       "4:11: agents[0].env.PORT: PORT is set by mend: it is the port mend assigns to each "
       "replica"},
      {"agents:\n  - name: a\n    command: x\n    capabilities: frontend\n",
       "4:19: agents[0].capabilities: expected a list of strings, got 'frontend'"},
      {"agents:\n  - name: a\n    command: x\n    probes: {liveness: {timeout: 0s}}\n",
       "4:34: agents[0].probes.liveness.timeout: must be greater than zero, got 0s"},
      {"agents:\n  - name: a\n    command: x\n    probes: {path: health}\n",
       "4:20: agents[0].probes.path: expected a path that starts with '/', such as /health, got "
       "'health'"},
      {"agents:\n  - {name: a, command: x}\n  - {name: b, command: x}\n"
       "fallback_chains:\n  a: [b, c]\n",
       "5:10: fallback_chains.a[1]: unknown agent 'c' (expected one of: a, b)"},
      {"agents:\n  - {name: a, command: x}\n  - {name: b, command: x}\n"
       "fallback_chains:\n  aa: [b]\n",
       "5:3: fallback_chains.aa: unknown agent 'aa' (did you mean 'a'?)"},
      {"agents:\n  - {name: a, command: x}\n  - {name: b, command: x}\n"
       "fallback_chains:\n  a: [b, a]\n",
       "5:10: fallback_chains.a[1]: an agent cannot be its own fallback"},
      {agent + "escalation:\n  receivers:\n    - {name: w, kind: webhook}\n",
       "5:7: escalation.receivers[0]: missing key 'url' (a webhook receiver posts to it)"},
      {agent + "escalation:\n  receivers:\n    - {name: f, kind: file}\n",
       "5:7: escalation.receivers[0]: missing key 'path' (the file to append to, or - for "
       "standard error)"},
      {agent + "escalation:\n  receivers:\n    - {name: p, kind: pagerduty}\n",
       "5:7: escalation.receivers[0]: missing key 'routing_key' or 'routing_key_env' "
       "(PagerDuty's integration key)"},
      {agent +
           "escalation:\n  receivers:\n    - {name: f, kind: file, path: x, url: \"http://h\"}\n",
       "5:38: escalation.receivers[0].url: 'url' does not apply to a file receiver (only to "
       "webhook, slack, pagerduty)"},
      {agent + "escalation:\n  receivers:\n    - {name: s, kind: slak, url: \"http://h\"}\n",
       "5:23: escalation.receivers[0].kind: unknown receiver kind 'slak' (did you mean 'slack'?)"},
      {agent + "escalation:\n  receivers:\n    - {name: f, kind: file, path: x}\n"
               "  routes:\n    on-call: [f, g]\n",
       "7:18: escalation.routes.on-call[1]: unknown receiver 'g' (expected one of: f)"},
      {agent + "escalation:\n  receivers:\n    - {name: f, kind: file, path: x}\n"
               "  routes:\n    oncall: [f]\n",
       "7:5: escalation.routes.oncall: unknown channel 'oncall' (did you mean 'on-call'?); "
       "channels are set under escalation.channels"},
      {agent + "escalation:\n  slas: {high: 0s}\n",
       "4:16: escalation.slas.high: must be greater than zero, got 0s"},
      {agent + "supervision:\n  restart_backoff_initial: 10m\n  restart_backoff_max: 1m\n",
       "5:3: supervision.restart_backoff_max: restart_backoff_max (1m) is below "
       "restart_backoff_initial (10m)"},
      {agent + "seed_fallback_chains: 1\n",
       "3:23: seed_fallback_chains: expected true or false, got '1'"},
      {agent + "degradation:\n  default_alternatives: [a, [b]]\n",
       "4:29: degradation.default_alternatives[1]: expected a string, got a list"},
      {"server:\n  port: [1, 2\n" + agent, "3:7: invalid YAML: end of sequence flow not found"},
      {"- a\n- b\n", "1:1: expected a mapping of sections (server, agents, ...), got a list"},
      {"server: {}\n", "agents: no agents configured (at least one is needed)"},
      {"agents: []\n", "1:1: agents: no agents configured (at least one is needed)"},
  };
  expect_one_problem_each(cases);
}

TEST(ConfigProblems, UnknownKeyFarFromAnyListsTheKnownKeys) {
  ConfigLoad load = parse("store: {file: x.db}\n" + std::string(kOneAgent));
  EXPECT_THAT(problems(load),
              ElementsAre("1:9: store.file: unknown key 'file' (known keys: path, busy_timeout)"));
}

TEST(ConfigProblems, SeveralAreReportedAtOnceInFileOrder) {
  ConfigLoad load = parse(
      "server:\n"
      "  port: x\n"     // 2
      "  threads: 0\n"  // 3
      "agents:\n"
      "  - name: a\n"
      "    command: x\n"
      "    replicas: many\n"      // 7
      "    stop_timeout: soon\n"  // 8
      "  - name: b\n"
      "    url: http://h:1\n"
      "    memory_limit: 1GiB\n"  // 11
      "fallback_chains:\n"
      "  b: [a, z]\n"  // 13
      "escalation:\n"
      "  max_tiers: -1\n");  // 15
  EXPECT_THAT(problems(load),
              ElementsAre("2:9: server.port: expected an integer, got 'x'",
                          "3:12: server.threads: must be between 1 and 256, got 0",
                          "7:15: agents[0].replicas: expected an integer, got 'many'",
                          "8:19: agents[0].stop_timeout: expected a duration such as 250ms, 1.5s, "
                          "10m, 2h, 1d or a number of seconds, got 'soon'",
                          "11:5: agents[1].memory_limit: 'memory_limit' applies only to an agent "
                          "that mend starts (with a command)",
                          "13:10: fallback_chains.b[1]: unknown agent 'z' (expected one of: a, b)",
                          "15:14: escalation.max_tiers: must be between 0 and 100, got -1"));
  EXPECT_FALSE(load.config.has_value());
}

TEST(ConfigProblems, BrokenYamlGivesExactlyTheProblemsItsHeaderLists) {
  ::unsetenv("MEND_BROKEN_YAML_UNSET_TOKEN");
  const std::string path = kSourceDir + "/tests/serve/data/broken.yaml";
  std::vector<std::string> expected;
  std::istringstream text(read_file(path));
  bool in_list = false;
  for (std::string line; std::getline(text, line);) {
    if (line == "# Expected problems:") {
      in_list = true;
    } else if (line == "# (end of expected problems)") {
      break;
    } else if (in_list) {
      ASSERT_EQ(line.rfind("#   ", 0), 0u) << line;
      expected.push_back(line.substr(4));
    }
  }
  ASSERT_GE(expected.size(), 15u);
  ConfigLoad load = load_config_file(path);
  EXPECT_FALSE(load.ok());
  EXPECT_EQ(problems(load), expected);
  for (const ConfigProblem& p : load.problems) EXPECT_EQ(p.file, path);
}

// --- Secrets from the environment ------------------------------------------------------------

TEST(ConfigEnvironment, TokenEnvReadsTheVariable) {
  ::setenv("MEND_CONFIG_TEST_TOKEN", "s3cret-token", 1);
  ConfigLoad load = parse("server: {token_env: MEND_CONFIG_TEST_TOKEN}\n" + std::string(kOneAgent));
  ASSERT_THAT(problems(load), ElementsAre());
  EXPECT_EQ(load.config->server.token, "s3cret-token");

  ::setenv("MEND_CONFIG_TEST_TOKEN", "", 1);
  EXPECT_THAT(
      problems(parse("server: {token_env: MEND_CONFIG_TEST_TOKEN}\n" + std::string(kOneAgent))),
      ElementsAre("1:21: server.token_env: the environment variable "
                  "MEND_CONFIG_TEST_TOKEN is not set (or is empty)"));
  ::unsetenv("MEND_CONFIG_TEST_TOKEN");
  EXPECT_FALSE(
      parse("server: {token_env: MEND_CONFIG_TEST_TOKEN}\n" + std::string(kOneAgent)).ok());
  EXPECT_THAT(problems(parse("server: {token_env: \"A B\"}\n" + std::string(kOneAgent))),
              ElementsAre("1:21: server.token_env: expected an environment variable name "
                          "(letters, digits, _), got 'A B'"));
}

TEST(ConfigEnvironment, RoutingKeyEnvReadsTheVariable) {
  ::setenv("MEND_CONFIG_TEST_PD_KEY", "R0UT1NG", 1);
  ConfigLoad load = parse(std::string(kOneAgent) +
                          "escalation:\n"
                          "  receivers:\n"
                          "    - {name: pd, kind: pagerduty, routing_key_env: "
                          "MEND_CONFIG_TEST_PD_KEY}\n"
                          "  routes: {emergency: [pd]}\n");
  ::unsetenv("MEND_CONFIG_TEST_PD_KEY");
  ASSERT_THAT(problems(load), ElementsAre());
  EXPECT_EQ(load.config->escalation.receivers[0].routing_key, "R0UT1NG");
  EXPECT_EQ(load.config->escalation.receivers[0].url, "");  // the receiver's default
  EXPECT_THAT(load.config->escalation.routes.at("emergency"), ElementsAre("pd"));
}

// --- Durations and sizes --------------------------------------------------------------------

TEST(ParseDuration, AcceptsUnitsCompoundsAndBareSeconds) {
  EXPECT_EQ(parse_duration("250ms"), milliseconds(250));
  EXPECT_EQ(parse_duration("1.5s"), milliseconds(1500));
  EXPECT_EQ(parse_duration("10m"), minutes(10));
  EXPECT_EQ(parse_duration("2h"), hours(2));
  EXPECT_EQ(parse_duration("1d"), hours(24));
  EXPECT_EQ(parse_duration("1h30m"), minutes(90));
  EXPECT_EQ(parse_duration("1m0.5s"), milliseconds(60500));
  EXPECT_EQ(parse_duration("90"), seconds(90));
  EXPECT_EQ(parse_duration("0.25"), milliseconds(250));
  EXPECT_EQ(parse_duration("0"), Duration::zero());
}

TEST(ParseDuration, RejectsEverythingElse) {
  for (const char* bad : {"", "abc", "10 s", "-1s", "-5", "1.", ".5", "10x", "s", "1e3", "1h-30m",
                          "5S", "1.5.5s", "9999999999d", " 1s"}) {
    EXPECT_EQ(parse_duration(bad), std::nullopt) << bad;
  }
}

TEST(ParseSize, AcceptsDecimalAndBinaryUnits) {
  EXPECT_EQ(parse_size("512MiB"), std::size_t{512} << 20);
  EXPECT_EQ(parse_size("64KiB"), std::size_t{64} << 10);
  EXPECT_EQ(parse_size("1GB"), std::size_t{1'000'000'000});
  EXPECT_EQ(parse_size("2GiB"), std::size_t{2} << 30);
  EXPECT_EQ(parse_size("1000"), std::size_t{1000});
  EXPECT_EQ(parse_size("1000B"), std::size_t{1000});
  EXPECT_EQ(parse_size("1.5KiB"), std::size_t{1536});
  EXPECT_EQ(parse_size("1kb"), std::size_t{1000});
  EXPECT_EQ(parse_size("0"), std::size_t{0});
}

TEST(ParseSize, RejectsEverythingElse) {
  for (const char* bad :
       {"", "MiB", "1 GB", "1PB", "-1", "1e9", "99999999TiB", "12 parsecs", "0x10", "1.KiB"}) {
    EXPECT_EQ(parse_size(bad), std::nullopt) << bad;
  }
}

TEST(ConfigValues, DurationAndSizeFieldsUseTheParsers) {
  ConfigLoad load = parse(
      "server: {max_body_bytes: 64KiB, read_timeout: 1.5, drain_timeout: 0}\n"
      "agents:\n"
      "  - {name: a, command: x, memory_limit: 1.5GiB, stop_timeout: 1m30s}\n");
  ASSERT_THAT(problems(load), ElementsAre());
  EXPECT_EQ(load.config->server.max_body_bytes, std::size_t{64} << 10);
  EXPECT_EQ(load.config->server.read_timeout, milliseconds(1500));
  EXPECT_EQ(load.config->server.drain_timeout, Duration::zero());
  EXPECT_EQ(load.config->agents[0].memory_limit_bytes, std::size_t{3} << 29);
  EXPECT_EQ(load.config->agents[0].stop_timeout, seconds(90));
  EXPECT_THAT(
      problems(parse("agents:\n  - {name: a, command: x, memory_limit: 1KiB}\n")),
      ElementsAre("2:41: agents[0].memory_limit: must be at least 1048576 bytes, got 1KiB"));
}

// --- Paths ----------------------------------------------------------------------------------

TEST(ConfigPaths, RelativePathsAreResolvedAgainstTheConfigFilesDirectory) {
  mend::testing::TempDir dir("mend-config");
  fs::create_directories(dir.path() / "bin");
  fs::create_directories(dir.path() / "work");
  const std::string script = dir.file("bin/agent");
  write_file(script, "#!/bin/sh\nexit 0\n");
  ::chmod(script.c_str(), 0755);
  write_file(dir.file("not-executable"), "");
  const std::string path = dir.file("mend.yaml");
  write_file(path,
             "store: {path: data/mend.db}\n"
             "agents:\n"
             "  - {name: a, command: ./bin/agent, working_dir: work}\n"
             "  - {name: b, command: mend-sample-agent}\n"
             "escalation:\n"
             "  receivers:\n"
             "    - {name: log, kind: file, path: ../notifications.jsonl}\n"
             "    - {name: err, kind: file, path: \"-\"}\n");
  ConfigLoad load = load_config_file(path);
  ASSERT_THAT(problems(load), ElementsAre());
  const Config& c = *load.config;
  const std::string root = dir.path().lexically_normal().string();
  EXPECT_EQ(c.store.path, root + "/data/mend.db");
  EXPECT_EQ(c.agents[0].command, root + "/bin/agent");
  EXPECT_EQ(c.agents[0].working_dir, root + "/work");
  EXPECT_EQ(c.agents[1].command, "mend-sample-agent");  // left to the PATH search
  EXPECT_EQ(c.agents[1].working_dir, root);
  EXPECT_EQ(c.escalation.receivers[0].path,
            (dir.path().parent_path() / "notifications.jsonl").lexically_normal().string());
  EXPECT_EQ(c.escalation.receivers[1].path, "-");

  write_file(path,
             "store: {path: \":memory:\"}\n"
             "agents:\n"
             "  - {name: a, command: ./not-executable}\n"
             "  - {name: b, command: x, working_dir: missing}\n");
  load = load_config_file(path);
  EXPECT_THAT(
      problems(load),
      ElementsAre("3:24: agents[0].command: no executable file at " + root + "/not-executable",
                  "4:40: agents[1].working_dir: no directory at " + root + "/missing"));
  EXPECT_EQ(parse("store: {path: \":memory:\"}\n" + std::string(kOneAgent)).config->store.path,
            ":memory:");
}

// --- Files, robustness, small API ---------------------------------------------------------

TEST(LoadConfigFile, AFileOthersMayReadWithAnInlineTokenIsWarnedAbout) {
  mend::testing::TempDir dir("mend-config");
  const std::string path = (dir.path() / "mend.yaml").string();
  write_file(path,
             "server: {token: s3cret}\nstore: {path: \":memory:\"}\n" + std::string(kOneAgent));
  fs::permissions(path, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
                            fs::perms::others_read);
  ConfigLoad load = load_config_file(path);
  ASSERT_TRUE(load.ok());
  ASSERT_EQ(load.warnings.size(), 1u);
  EXPECT_THAT(load.warnings[0], HasSubstr("holds server.token inline: chmod 600"));
  EXPECT_EQ(load.warnings[0].find("s3cret"), std::string::npos) << "never the secret itself";

  fs::permissions(path, fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_TRUE(load_config_file(path).warnings.empty());
  write_file(path, "store: {path: \":memory:\"}\n" + std::string(kOneAgent));
  fs::permissions(path, fs::perms::owner_read | fs::perms::group_read | fs::perms::others_read);
  EXPECT_TRUE(load_config_file(path).warnings.empty()) << "no token, nothing to hide";
}

TEST(LoadConfigFile, AnUnreadableFileIsOneProblemWithoutALine) {
  ConfigLoad load = load_config_file("/nonexistent/mend.yaml");
  ASSERT_EQ(load.problems.size(), 1u);
  EXPECT_EQ(load.problems[0].line, 0);
  EXPECT_EQ(load.problems[0].to_string(),
            "/nonexistent/mend.yaml: cannot read the configuration: No such file or directory");

  mend::testing::TempDir dir("mend-config");
  load = load_config_file(dir.path().string());
  ASSERT_EQ(load.problems.size(), 1u);
  EXPECT_THAT(load.problems[0].message, HasSubstr("it is a directory"));
}

TEST(LoadConfigFile, EmptyFileIsValidYamlButHasNoAgents) {
  mend::testing::TempDir dir("mend-config");
  write_file(dir.file("empty.yaml"), "# nothing yet\n");
  ConfigLoad load = load_config_file(dir.file("empty.yaml"));
  EXPECT_THAT(problems(load), ElementsAre("agents: no agents configured (at least one is needed)"));
}

TEST(ConfigRobustness, NeverThrowsOnTruncatedOrHostileInput) {
  const std::string example = read_file(kSourceDir + "/examples/mend.yaml");
  ASSERT_GT(example.size(), 1000u);
  int valid = 0;
  for (std::size_t cut = 0; cut < example.size(); cut += 37) {
    ConfigLoad load = parse(example.substr(0, cut));
    EXPECT_EQ(load.ok(), load.problems.empty());
    valid += load.ok() ? 1 : 0;
  }
  EXPECT_LT(valid, static_cast<int>(example.size() / 37));  // most cuts break something

  ConfigLoad deep = parse("a: " + std::string(100000, '[') + std::string(100000, ']'));
  ASSERT_EQ(deep.problems.size(), 1u);
  EXPECT_THAT(deep.problems[0].message, HasSubstr("levels deep"));
  ConfigLoad binary = parse(std::string("\x00\xff\xfe:\x01\x02\n\t- [", 12));
  EXPECT_FALSE(binary.ok());
  ConfigLoad tabs = parse("server:\n\tport: 1\n");
  ASSERT_EQ(tabs.problems.size(), 1u);
  EXPECT_THAT(tabs.problems[0].message, HasSubstr("YAML does not allow tabs for indentation"));
}

TEST(ConfigProblem, ToStringLeavesOutWhatIsUnknown) {
  EXPECT_EQ((ConfigProblem{"mend.yaml", 12, 5, "agents[2].replicas", "must be ..."}).to_string(),
            "mend.yaml:12:5: agents[2].replicas: must be ...");
  EXPECT_EQ((ConfigProblem{"mend.yaml", 12, 0, "server", "m"}).to_string(),
            "mend.yaml:12: server: m");
  EXPECT_EQ((ConfigProblem{"mend.yaml", 0, 0, "", "cannot read"}).to_string(),
            "mend.yaml: cannot read");
  EXPECT_EQ((ConfigProblem{"", 3, 1, "k", "m"}).to_string(), "3:1: k: m");
  EXPECT_EQ((ConfigProblem{"", 0, 0, "", "m"}).to_string(), "m");
}

TEST(ConfigRelays, ReadWithTheServersDefaults) {
  ConfigLoad load = parse(std::string("server: {address: 127.0.0.2, port: 7070}\n") + kOneAgent +
                          "relays:\n  - {agent: a, port: 7080}\n"
                          "  - {agent: a, port: 0, address: \"::1\", threads: 4, "
                          "max_response_bytes: 1MiB}\n");
  ASSERT_TRUE(load.ok()) << ::testing::PrintToString(problems(load));
  const std::vector<RelayConfig>& relays = load.config->relays;
  ASSERT_EQ(relays.size(), 2u);
  EXPECT_EQ(relays[0].agent, "a");
  EXPECT_EQ(relays[0].address, "127.0.0.2");  // server.address
  EXPECT_EQ(relays[0].port, 7080);
  EXPECT_EQ(relays[0].threads, 0u);  // server.threads, at start
  EXPECT_EQ(relays[0].max_response_bytes, std::size_t{64} << 20);
  EXPECT_EQ(relays[1].address, "::1");
  EXPECT_EQ(relays[1].port, 0);
  EXPECT_EQ(relays[1].threads, 4u);
  EXPECT_EQ(relays[1].max_response_bytes, std::size_t{1} << 20);
}

TEST(ConfigRelays, EachMistakeIsNamedWithItsPlace) {
  const std::string agent = kOneAgent;
  const std::vector<ProblemCase> cases = {
      {agent + "relays:\n  - {agent: b, port: 7080}\n",
       "4:13: relays[0].agent: unknown agent 'b' (expected one of: a)"},
      {agent + "relays:\n  - {port: 7080}\n",
       "4:5: relays[0]: missing key 'agent' (the agent the relay passes requests to)"},
      {agent + "relays:\n  - {agent: a}\n",
       "4:5: relays[0]: missing key 'port' (0 for any free port)"},
      {agent + "relays:\n  - {agent: a, port: 7070}\n",
       "4:22: relays[0].port: port 7070 is server.port"},
      {agent + "relays:\n  - {agent: a, port: 7080}\n  - {agent: a, port: 7080}\n",
       "5:22: relays[1].port: port 7080 is taken by the relay at line 4"},
      {agent + "relays:\n  - {agent: a, port: 1, address: localhost}\n",
       "4:34: relays[0].address: expected an IP address such as 127.0.0.1, 0.0.0.0 or ::1 (not a "
       "host name), got 'localhost'"},
      {agent + "relays:\n  - {agent: a, port: 1, thread: 2}\n",
       "4:25: relays[0].thread: unknown key 'thread' (did you mean 'threads'?)"},
      {agent + "relays: {agent: a}\n", "3:9: relays: expected a list of relays, got a mapping"},
  };
  expect_one_problem_each(cases);
}

TEST(ConfigTasks, DefaultsAndValues) {
  ConfigLoad defaults = parse(kOneAgent);
  ASSERT_TRUE(defaults.ok());
  EXPECT_TRUE(defaults.config->tasks.idempotent_types.empty());
  EXPECT_EQ(defaults.config->tasks.retained, 10000u);
  ConfigLoad load = parse(std::string(kOneAgent) +
                          "tasks: {idempotent_types: [code_review, ai_analysis], retained: 50}\n");
  ASSERT_TRUE(load.ok()) << ::testing::PrintToString(problems(load));
  EXPECT_THAT(load.config->tasks.idempotent_types, ElementsAre("code_review", "ai_analysis"));
  EXPECT_EQ(load.config->tasks.retained, 50u);
  const std::string agent = kOneAgent;
  expect_one_problem_each({
      {agent + "tasks: {retained: 0}\n",
       "3:19: tasks.retained: must be between 1 and 10000000, got 0"},
      {agent + "tasks: {idempotent: [code_review]}\n",
       "3:9: tasks.idempotent: unknown key 'idempotent' (known keys: idempotent_types, retained)"},
  });
}

TEST(Config, AgentFindsByName) {
  ConfigLoad load =
      parse("agents:\n  - {name: a, url: \"http://h:1\"}\n  - {name: b.c_d-1, command: x}\n");
  ASSERT_TRUE(load.ok());
  ASSERT_NE(load.config->agent("b.c_d-1"), nullptr);
  EXPECT_TRUE(load.config->agent("b.c_d-1")->supervised());
  EXPECT_EQ(load.config->agent("a")->urls.size(), 1u);
  EXPECT_EQ(load.config->agent("c"), nullptr);
  EXPECT_EQ(load.config->source_path, "test.yaml");
}

}  // namespace
}  // namespace mend
