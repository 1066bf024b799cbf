// The sections beside agents and policies: relays, tasks and the store, read with their defaults
// and checked; policies.replica_balancing, global and per agent; and Config::agent, which finds an
// agent by name.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "config_test_support.h"
#include "mend/server/config.h"

namespace mend {
namespace {

using config_test_support::expect_one_problem_each;
using config_test_support::kOneAgent;
using config_test_support::parse;
using config_test_support::ProblemCase;
using config_test_support::problems;
using ::testing::ElementsAre;

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

TEST(ConfigStore, SqliteByDefaultPostgresWithAUrl) {
  ConfigLoad defaults = parse(kOneAgent);
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults.config->store.url, "");  // SQLite, at store.path
  ConfigLoad load = parse(std::string(kOneAgent) +
                          "store: {url: \"postgresql://mend@db.example.com:5432/mend\","
                          " busy_timeout: 2s}\n");
  ASSERT_TRUE(load.ok()) << ::testing::PrintToString(problems(load));
  EXPECT_EQ(load.config->store.url, "postgresql://mend@db.example.com:5432/mend");
  EXPECT_EQ(load.config->store.busy_timeout, std::chrono::seconds(2));
  ConfigLoad short_scheme =
      parse(std::string(kOneAgent) + "store: {url: \"postgres://db/mend\"}\n");
  ASSERT_TRUE(short_scheme.ok()) << ::testing::PrintToString(problems(short_scheme));
  const std::string agent = kOneAgent;
  expect_one_problem_each({
      // The URL is not repeated in the message: it may hold a password.
      {agent + "store: {url: \"mysql://root:pw@db/mend\"}\n",
       "3:14: store.url: expected a PostgreSQL URL (postgresql://user@host:port/dbname)"},
      {agent + "store: {path: mend.db, url: \"postgresql://db/mend\"}\n",
       "3:24: store.url: set either store.path (SQLite) or store.url (PostgreSQL), not both"},
  });
}

TEST(ConfigReplicaBalancing, DefaultsGlobalValuesAndAnAgentsOverride) {
  using std::chrono::seconds;
  ConfigLoad defaults = parse(kOneAgent);
  ASSERT_TRUE(defaults.ok());
  const ReplicaBalancerOptions& d = defaults.config->agent("a")->policies.replica_balancing;
  EXPECT_EQ(d.consecutive_failures, 5);
  EXPECT_DOUBLE_EQ(d.failure_rate_threshold, 0.5);
  EXPECT_EQ(d.failure_rate_minimum_calls, 10);
  EXPECT_EQ(d.failure_rate_window, seconds(60));
  EXPECT_EQ(d.base_ejection_time, seconds(30));
  EXPECT_EQ(d.max_ejection_time, seconds(300));
  EXPECT_EQ(d.max_ejection_percent, 50);
  EXPECT_DOUBLE_EQ(d.slow_call_factor, 5);
  EXPECT_EQ(d.slow_call_minimum, std::chrono::milliseconds(100));

  ConfigLoad load = parse(
      "policies:\n"
      "  replica_balancing: {consecutive_failures: 3, failure_rate_threshold: 0.25,\n"
      "                      failure_rate_minimum_calls: 20, failure_rate_window: 2m,\n"
      "                      base_ejection_time: 10s, max_ejection_time: 1m,\n"
      "                      max_ejection_percent: 34, slow_call_factor: 3,\n"
      "                      slow_call_minimum: 1s}\n"
      "agents:\n"
      "  - name: a\n"
      "    url: http://127.0.0.1:1\n"
      "    policies: {replica_balancing: {consecutive_failures: 0}}\n"
      "  - {name: b, url: \"http://127.0.0.1:2\"}\n");
  ASSERT_TRUE(load.ok()) << ::testing::PrintToString(problems(load));
  const ReplicaBalancerOptions& b = load.config->agent("b")->policies.replica_balancing;
  EXPECT_EQ(b.consecutive_failures, 3);
  EXPECT_DOUBLE_EQ(b.failure_rate_threshold, 0.25);
  EXPECT_EQ(b.failure_rate_minimum_calls, 20);
  EXPECT_EQ(b.failure_rate_window, seconds(120));
  EXPECT_EQ(b.base_ejection_time, seconds(10));
  EXPECT_EQ(b.max_ejection_time, seconds(60));
  EXPECT_EQ(b.max_ejection_percent, 34);
  EXPECT_DOUBLE_EQ(b.slow_call_factor, 3);
  EXPECT_EQ(b.slow_call_minimum, seconds(1));
  const ReplicaBalancerOptions& a = load.config->agent("a")->policies.replica_balancing;
  EXPECT_EQ(a.consecutive_failures, 0);          // the agent's
  EXPECT_EQ(a.base_ejection_time, seconds(10));  // the global one's
}

TEST(ConfigReplicaBalancing, EachOutOfRangeValueIsNamed) {
  const std::string agent = kOneAgent;
  expect_one_problem_each({
      {"policies:\n  replica_balancing: {max_ejection_percent: 150}\n" + agent,
       "2:45: policies.replica_balancing.max_ejection_percent: must be between 0 and 100, got "
       "150"},
      {"policies:\n  replica_balancing: {failure_rate_threshold: 0}\n" + agent,
       "2:47: policies.replica_balancing.failure_rate_threshold: must be in (0, 1] "
       "(a fraction: 0.5 is 50 %), got 0"},
      {"policies:\n  replica_balancing: {consecutive_failures: -1}\n" + agent,
       "2:45: policies.replica_balancing.consecutive_failures: must be between 0 and 1000000, "
       "got -1"},
      {"policies:\n  replica_balancing: {base_ejection_time: 0s}\n" + agent,
       "2:43: policies.replica_balancing.base_ejection_time: must be greater than zero, got "
       "0s"},
      {"policies:\n  replica_balancing: {base_ejection_time: 1m, max_ejection_time: 30s}\n" + agent,
       "2:3: policies.replica_balancing: replica balancing: max_ejection_time must be >= "
       "base_ejection_time"},
      {"policies:\n  replica_balancing: {ejection_time: 1m}\n" + agent,
       "2:23: policies.replica_balancing.ejection_time: unknown key 'ejection_time' (known keys: "
       "consecutive_failures, failure_rate_threshold, failure_rate_minimum_calls, "
       "failure_rate_window, base_ejection_time, max_ejection_time, max_ejection_percent, "
       "slow_call_factor, slow_call_minimum)"},
      {"policies:\n  replica_balancing: {slow_call_factor: 0.5}\n" + agent,
       "2:3: policies.replica_balancing: replica balancing: slow_call_factor must be 0 (off) or "
       ">= 1"},
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
