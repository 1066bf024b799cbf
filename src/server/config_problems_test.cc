// A configuration's problems: one of each kind, each with its line, column and key, several
// at once in file order, and how a problem is printed.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <sstream>
#include <string>
#include <vector>

#include "config_test_support.h"
#include "mend/server/config.h"

namespace mend {
namespace {

using config_test_support::expect_one_problem_each;
using config_test_support::kOneAgent;
using config_test_support::kSourceDir;
using config_test_support::parse;
using config_test_support::ProblemCase;
using config_test_support::problems;
using config_test_support::read_file;
using ::testing::ElementsAre;

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
      {agent + "default_fallback_chains: 1\n",
       "3:26: default_fallback_chains: expected true or false, got '1'"},
      {agent + "seed_fallback_chains: 1\n",
       "3:23: seed_fallback_chains: expected true or false, got '1'"},
      {agent + "default_fallback_chains: true\nseed_fallback_chains: true\n",
       "4:1: seed_fallback_chains: give either default_fallback_chains or seed_fallback_chains "
       "(its former name), not both"},
      {agent + "seed_fallback_chain: true\n",
       "3:1: seed_fallback_chain: unknown key 'seed_fallback_chain' (known keys: server, store, "
       "tasks, policies, classifier, agents, fallback_chains, default_fallback_chains, "
       "degradation, escalation, supervision, relays)"},
      {agent + "policies: {retry: {backoff: {kind: sed}}}\n",
       "3:36: policies.retry.backoff.kind: unknown backoff kind 'sed' (expected one of: "
       "error_scaled, constant, linear, exponential, full_jitter, equal_jitter, "
       "decorrelated_jitter, full, equal, decorrelated)"},
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
  EXPECT_THAT(
      problems(load),
      ElementsAre("1:9: store.file: unknown key 'file' (known keys: path, busy_timeout, url)"));
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

}  // namespace
}  // namespace mend
