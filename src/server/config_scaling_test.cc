// Scaled replicas: `replicas: {min, max}` beside the integer form, the `scaling:` options under
// an agent, their defaults, and every refusal at its key.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "config_test_support.h"
#include "mend/server/config.h"

namespace mend {
namespace {

using config_test_support::expect_one_problem_each;
using config_test_support::parse;
using config_test_support::problems;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;
using ::testing::ElementsAre;

std::string scaled_agent(const std::string& lines) {
  return "agents:\n  - name: a\n    command: x\n" + lines;
}

TEST(ConfigScaling, TheIntegerFormStartsThatManyReplicasAndScalesNothing) {
  ConfigLoad load = parse(scaled_agent("    replicas: 3\n"));
  ASSERT_THAT(problems(load), ElementsAre());
  const AgentConfig& a = load.config->agents[0];
  EXPECT_EQ(a.replicas, 3);
  EXPECT_FALSE(a.scaled());
}

TEST(ConfigScaling, MinAndMaxStartMinReplicasWithTheScalersDefaults) {
  ConfigLoad load = parse(scaled_agent("    replicas: {min: 1, max: 4}\n"));
  ASSERT_THAT(problems(load), ElementsAre());
  const AgentConfig& a = load.config->agents[0];
  EXPECT_EQ(a.replicas, 1);
  ASSERT_TRUE(a.scaled());
  const ReplicaScalerOptions& o = a.scaling->scaler;
  EXPECT_EQ(o.min_replicas, 1);
  EXPECT_EQ(o.max_replicas, 4);
  const ReplicaScalerOptions defaults;
  EXPECT_EQ(o.scale_up_cooldown, defaults.scale_up_cooldown);
  EXPECT_EQ(o.scale_down_delay, defaults.scale_down_delay);
  EXPECT_EQ(o.scale_down_utilisation, defaults.scale_down_utilisation);
  EXPECT_EQ(o.latency_threshold, defaults.latency_threshold);
  EXPECT_EQ(o.replica_capacity, defaults.replica_capacity);
  EXPECT_EQ(o.start_timeout, defaults.start_timeout);
  EXPECT_EQ(a.scaling->interval, seconds(1));
}

TEST(ConfigScaling, EveryScalingOptionIsRead) {
  ConfigLoad load =
      parse(scaled_agent("    replicas:\n      min: 2\n      max: 2\n"
                         "    scaling:\n"
                         "      interval: 250ms\n"
                         "      scale_up_cooldown: 10s\n"
                         "      scale_down_delay: 2m\n"
                         "      scale_down_utilisation: 0.25\n"
                         "      latency_threshold: 1.5s\n"
                         "      replica_capacity: 8\n"
                         "      start_timeout: 90s\n"));
  ASSERT_THAT(problems(load), ElementsAre());
  const AgentConfig& a = load.config->agents[0];
  EXPECT_EQ(a.replicas, 2);
  ASSERT_TRUE(a.scaled());
  const ReplicaScalerOptions& o = a.scaling->scaler;
  EXPECT_EQ(o.min_replicas, 2);
  EXPECT_EQ(o.max_replicas, 2);
  EXPECT_EQ(a.scaling->interval, milliseconds(250));
  EXPECT_EQ(o.scale_up_cooldown, seconds(10));
  EXPECT_EQ(o.scale_down_delay, minutes(2));
  EXPECT_DOUBLE_EQ(o.scale_down_utilisation, 0.25);
  EXPECT_EQ(o.latency_threshold, milliseconds(1500));
  EXPECT_EQ(o.replica_capacity, 8);
  EXPECT_EQ(o.start_timeout, seconds(90));
  // Whatever the file says, the scaler accepts it.
  EXPECT_NO_THROW(ReplicaScaler(o, a.replicas));
}

TEST(ConfigScaling, EveryValueOutOfRangeIsAProblemAtItsKey) {
  expect_one_problem_each({
      {scaled_agent("    replicas: {min: 0, max: 4}\n"),
       "4:21: agents[0].replicas.min: must be between 1 and 1000, got 0"},
      {scaled_agent("    replicas: {min: 1, max: 1001}\n"),
       "4:29: agents[0].replicas.max: must be between 1 and 1000, got 1001"},
      {scaled_agent("    replicas: {min: 3, max: 2}\n"),
       "4:29: agents[0].replicas.max: must be at least min (3), got 2"},
      {scaled_agent("    replicas: {max: 2}\n"),
       "4:5: agents[0].replicas: missing key 'min' (replicas: {min, max} gives the fewest "
       "replicas mend runs and the most it scales up to)"},
      {scaled_agent("    replicas: {min: 1, max: 2}\n    scaling: {interval: 0s}\n"),
       "5:25: agents[0].scaling.interval: must be greater than zero, got 0s"},
      {scaled_agent("    replicas: {min: 1, max: 2}\n    scaling: {scale_up_cooldown: -1s}\n"),
       "5:34: agents[0].scaling.scale_up_cooldown: must not be negative, got -1s"},
      {scaled_agent("    replicas: {min: 1, max: 2}\n    scaling: {scale_down_delay: 2x}\n"),
       "5:33: agents[0].scaling.scale_down_delay: expected a duration such as 250ms, 1.5s, 10m, "
       "2h, 1d or a number of seconds, got '2x'"},
      {scaled_agent("    replicas: {min: 1, max: 2}\n    scaling: {scale_down_utilisation: 1}\n"),
       "5:39: agents[0].scaling.scale_down_utilisation: must be in [0, 1) (a share of the "
       "replicas' capacity), got 1"},
      {scaled_agent("    replicas: {min: 1, max: 2}\n    scaling: {latency_threshold: fast}\n"),
       "5:34: agents[0].scaling.latency_threshold: expected a duration such as 250ms, 1.5s, 10m, "
       "2h, 1d or a number of seconds, got 'fast'"},
      {scaled_agent("    replicas: {min: 1, max: 2}\n    scaling: {replica_capacity: -1}\n"),
       "5:33: agents[0].scaling.replica_capacity: must be between 0 and 1000000, got -1"},
      {scaled_agent("    replicas: {min: 1, max: 2}\n    scaling: {start_timeout: 0}\n"),
       "5:30: agents[0].scaling.start_timeout: must be greater than zero, got 0"},
      {scaled_agent("    replicas: {min: 1, max: 2}\n    scaling: {cooldown: 1s}\n"),
       "5:15: agents[0].scaling.cooldown: unknown key "},
  });
}

TEST(ConfigScaling, AMisspelledMaxIsUnknownAndMaxIsMissing) {
  EXPECT_THAT(problems(parse(scaled_agent("    replicas: {min: 1, most: 2}\n"))),
              ElementsAre("4:5: agents[0].replicas: missing key 'max' (replicas: {min, max} gives "
                          "the fewest replicas mend runs and the most it scales up to)",
                          "4:24: agents[0].replicas.most: unknown key 'most' (known keys: min, "
                          "max)"));
}

TEST(ConfigScaling, MinAndMaxAndScalingAreRefusedWhereTheyCannotApply) {
  expect_one_problem_each({
      {"agents:\n  - name: a\n    url: \"http://127.0.0.1:9001\"\n    replicas: {min: 1, max: 2}\n",
       "4:5: agents[0].replicas: replicas: {min, max} applies only to an agent that mend starts "
       "(with a command); an agent reached by URL has one replica per URL"},
      {"agents:\n  - name: a\n    url: \"http://127.0.0.1:9001\"\n    scaling: {}\n",
       "4:5: agents[0].scaling: 'scaling' applies only to an agent that mend starts (with a "
       "command)"},
      {scaled_agent("    scaling: {scale_down_delay: 1m}\n"),
       "4:5: agents[0].scaling: 'scaling' applies only to an agent with replicas: {min, max} "
       "(the range mend scales it in)"},
      {scaled_agent("    replicas: 2\n    scaling: {scale_down_delay: 1m}\n"),
       "5:5: agents[0].scaling: 'scaling' applies only to an agent with replicas: {min, max} "
       "(the range mend scales it in)"},
      {scaled_agent("    replicas: [1, 2]\n"),
       "4:15: agents[0].replicas: expected an integer, got a list"},
  });
}

}  // namespace
}  // namespace mend
