// policies.hedging, global and per agent: off by default, a mapping turns it on (an agent's over
// the global one's fields), `false` turns it off, a fixed delay or a percentile, and every
// refusal at its key.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "config_test_support.h"
#include "mend/server/config.h"

namespace mend {
namespace {

using config_test_support::expect_one_problem_each;
using config_test_support::kOneAgent;
using config_test_support::parse;
using config_test_support::problems;
using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::ElementsAre;

std::string agent_with(const std::string& policies) {
  return "agents:\n  - name: a\n    url: \"http://127.0.0.1:9001\"\n    policies:\n" + policies;
}

TEST(ConfigHedging, IsOffByDefault) {
  ConfigLoad load = parse(kOneAgent);
  ASSERT_THAT(problems(load), ElementsAre());
  EXPECT_FALSE(load.config->policies.hedging.has_value());
  EXPECT_FALSE(load.config->agents[0].policies.hedging.has_value());
}

TEST(ConfigHedging, AnEmptyMappingTurnsItOnWithTheDefaults) {
  ConfigLoad load = parse(agent_with("      hedging: {}\n"));
  ASSERT_THAT(problems(load), ElementsAre());
  const auto& h = load.config->agents[0].policies.hedging;
  ASSERT_TRUE(h.has_value());
  const HedgingOptions defaults;
  EXPECT_EQ(h->delay, std::nullopt);  // the observed p95
  EXPECT_DOUBLE_EQ(h->quantile, 0.95);
  EXPECT_EQ(h->min_delay, defaults.min_delay);
  EXPECT_EQ(h->max_delay, defaults.max_delay);
  EXPECT_TRUE(h->task_types.empty());  // none hedged until listed
  EXPECT_EQ(h->window, defaults.window);
  EXPECT_EQ(h->min_samples, defaults.min_samples);
}

TEST(ConfigHedging, EveryKeyIsRead) {
  ConfigLoad load =
      parse(agent_with("      hedging:\n"
                       "        delay: 50ms\n"
                       "        min_delay: 5ms\n"
                       "        max_delay: 500ms\n"
                       "        task_types: [code_review, ai_analysis]\n"
                       "        window: 30s\n"
                       "        min_samples: 50\n"));
  ASSERT_THAT(problems(load), ElementsAre());
  const auto& h = load.config->agents[0].policies.hedging;
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(h->delay, milliseconds(50));
  EXPECT_EQ(h->min_delay, milliseconds(5));
  EXPECT_EQ(h->max_delay, milliseconds(500));
  EXPECT_THAT(h->task_types, ElementsAre("code_review", "ai_analysis"));
  EXPECT_EQ(h->window, seconds(30));
  EXPECT_EQ(h->min_samples, 50);
}

TEST(ConfigHedging, APercentileDelayIsTheObservedOne) {
  for (const auto& [text, q] : {std::pair{"p95", 0.95}, {"p99", 0.99}, {"p99.9", 0.999}}) {
    ConfigLoad load = parse(agent_with(std::string("      hedging: {delay: ") + text + "}\n"));
    ASSERT_THAT(problems(load), ElementsAre()) << text;
    const auto& h = load.config->agents[0].policies.hedging;
    ASSERT_TRUE(h.has_value());
    EXPECT_EQ(h->delay, std::nullopt) << text;
    EXPECT_DOUBLE_EQ(h->quantile, q) << text;
  }
}

TEST(ConfigHedging, AnAgentsHedgingGoesOverTheGlobalOneAndFalseTurnsItOff) {
  ConfigLoad load = parse(
      "policies:\n  hedging: {delay: 100ms, task_types: [code_review]}\n"
      "agents:\n"
      "  - name: a\n    url: \"http://127.0.0.1:9001\"\n"
      "    policies: {hedging: {delay: 20ms}}\n"
      "  - name: b\n    url: \"http://127.0.0.1:9002\"\n"
      "    policies: {hedging: false}\n"
      "  - name: c\n    url: \"http://127.0.0.1:9003\"\n");
  ASSERT_THAT(problems(load), ElementsAre());
  const auto& a = load.config->agents[0].policies.hedging;
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->delay, milliseconds(20));
  EXPECT_THAT(a->task_types, ElementsAre("code_review"));  // the global one's
  EXPECT_FALSE(load.config->agents[1].policies.hedging.has_value());
  const auto& c = load.config->agents[2].policies.hedging;
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->delay, milliseconds(100));
}

TEST(ConfigHedging, ValuesOutOfRangeAreReportedAtTheirKey) {
  expect_one_problem_each({
      {agent_with("      hedging: {delay: 0s}\n"),
       "5:24: agents[0].policies.hedging.delay: must be greater than zero, got 0s"},
      {agent_with("      hedging: {delay: p100}\n"),
       "5:24: agents[0].policies.hedging.delay: expected a duration (50ms) or a percentile of the "
       "agent's latency (p95: above 0, below 100), got 'p100'"},
      {agent_with("      hedging: {delay: pnine}\n"),
       "5:24: agents[0].policies.hedging.delay: expected a duration (50ms) or a percentile of the "
       "agent's latency (p95: above 0, below 100), got 'pnine'"},
      {agent_with("      hedging: {delay: [1]}\n"),
       "5:24: agents[0].policies.hedging.delay: expected a duration such as "},
      {agent_with("      hedging: {min_delay: -1ms}\n"),
       "5:28: agents[0].policies.hedging.min_delay: must not be negative, got -1ms"},
      {agent_with("      hedging: {max_delay: 0s}\n"),
       "5:28: agents[0].policies.hedging.max_delay: must be greater than zero, got 0s"},
      {agent_with("      hedging: {min_delay: 3s, max_delay: 1s}\n"),
       "5:7: agents[0].policies.hedging: hedging: min_delay must not be above max_delay"},
      {agent_with("      hedging: {task_types: code_review}\n"),
       "5:29: agents[0].policies.hedging.task_types: expected a list of strings, got "
       "'code_review'"},
      {agent_with("      hedging: {window: 0s}\n"),
       "5:25: agents[0].policies.hedging.window: must be greater than zero, got 0s"},
      {agent_with("      hedging: {min_samples: 0}\n"),
       "5:30: agents[0].policies.hedging.min_samples: must be between 1 and 1000000, got 0"},
      {agent_with("      hedging: {quantile: 0.9}\n"),
       "5:17: agents[0].policies.hedging.quantile: unknown key 'quantile' (known keys: delay, "
       "min_delay, max_delay, task_types, window, min_samples)"},
      {agent_with("      hedging: 50ms\n"),
       "5:16: agents[0].policies.hedging: expected a mapping (or false for none), got '50ms'"},
  });
}

}  // namespace
}  // namespace mend
