// The sections beside agents and policies: relays and tasks, read with their defaults and
// checked; and Config::agent, which finds an agent by name.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

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
