// Former names (backoff kind seed, seed_fallback_chains): still read, each with a warning that
// names its place and the new name.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "config_test_support.h"
#include "mend/server/config.h"
#include "mend_test/temp_dir.h"

namespace mend {
namespace {

using config_test_support::kOneAgent;
using config_test_support::parse;
using config_test_support::problems;
using config_test_support::warnings;
using config_test_support::write_file;
using std::chrono::seconds;
using ::testing::ElementsAre;

TEST(FormerNames, BackoffKindSeedIsErrorScaledWithAWarning) {
  ConfigLoad load = parse(std::string(kOneAgent) +
                          "policies:\n"
                          "  retry: {backoff: {kind: seed, base: 2s}}\n");
  ASSERT_THAT(problems(load), ElementsAre());
  EXPECT_EQ(load.config->policies.retry.backoff.kind, BackoffKind::error_scaled);
  EXPECT_EQ(load.config->policies.retry.backoff.base, seconds(2));
  EXPECT_THAT(warnings(load),
              ElementsAre("4:27: policies.retry.backoff.kind: backoff kind 'seed' is deprecated: "
                          "it is now called 'error_scaled'"));

  // In an agent's own policies too, each where it is written.
  load = parse(
      "agents:\n"
      "  - name: a\n"
      "    url: \"http://127.0.0.1:9001\"\n"
      "    policies: {retry: {backoff: {kind: \"seed\"}}}\n"
      "policies: {retry: {backoff: {kind: error_scaled}}}\n");
  ASSERT_THAT(problems(load), ElementsAre());
  EXPECT_EQ(load.config->agents[0].policies.retry.backoff.kind, BackoffKind::error_scaled);
  EXPECT_THAT(warnings(load),
              ElementsAre("4:40: agents[0].policies.retry.backoff.kind: backoff kind 'seed' is "
                          "deprecated: it is now called 'error_scaled'"));
}

TEST(FormerNames, TheTokenBucketsKeysAreReadWithAWarningAndUnused) {
  ConfigLoad load = parse(std::string(kOneAgent) +
                          "policies:\n"
                          "  retry_budget: {max_tokens: 100, token_ratio: 0.1, ratio: 0.25}\n");
  ASSERT_THAT(problems(load), ElementsAre());
  ASSERT_TRUE(load.config->policies.retry_budget.has_value());
  EXPECT_DOUBLE_EQ(load.config->policies.retry_budget->ratio, 0.25);
  EXPECT_THAT(warnings(load),
              ::testing::Contains(::testing::HasSubstr(
                  "policies.retry_budget.max_tokens: key 'max_tokens' is no longer used")));
  EXPECT_THAT(warnings(load),
              ::testing::Contains(::testing::HasSubstr(
                  "policies.retry_budget.token_ratio: key 'token_ratio' is no longer used")));
}

TEST(RetryBudgetConfig, EveryKeyIsReadAndRangeChecked) {
  ConfigLoad load =
      parse(std::string(kOneAgent) +
            "policies:\n"
            "  retry_budget: {ratio: 0.2, min_retries_per_second: 3, window: 30s,\n"
            "                 other_replica_cost: 0.25, plain_cost: 2,\n"
            "                 overload_cost: 8, overload_failure_share: 0.6,\n"
            "                 overload_minimum_calls: 20, min_retries_in_flight: 3}\n");
  ASSERT_THAT(problems(load), ElementsAre());
  const RetryBudgetOptions& b = *load.config->policies.retry_budget;
  EXPECT_DOUBLE_EQ(b.ratio, 0.2);
  EXPECT_DOUBLE_EQ(b.min_retries_per_second, 3);
  EXPECT_EQ(b.window, seconds(30));
  EXPECT_DOUBLE_EQ(b.other_replica_cost, 0.25);
  EXPECT_DOUBLE_EQ(b.plain_cost, 2);
  EXPECT_DOUBLE_EQ(b.overload_cost, 8);
  EXPECT_DOUBLE_EQ(b.overload_failure_share, 0.6);
  EXPECT_EQ(b.overload_minimum_calls, 20);
  EXPECT_EQ(b.min_retries_in_flight, 3);

  for (const char* bad :
       {"{window: 2h}", "{ratio: -1}", "{overload_failure_share: 0}", "{overload_cost: 5000}"}) {
    ConfigLoad wrong = parse(std::string(kOneAgent) + "policies:\n  retry_budget: " + bad + "\n");
    EXPECT_EQ(problems(wrong).size(), 1u) << bad;
  }
}

TEST(FormerNames, SeedFallbackChainsIsDefaultFallbackChainsWithAWarning) {
  for (bool value : {true, false}) {
    ConfigLoad load = parse(std::string(kOneAgent) +
                            "seed_fallback_chains: " + (value ? "true" : "false") + "\n");
    ASSERT_THAT(problems(load), ElementsAre());
    EXPECT_EQ(load.config->default_fallback_chains, value);
    EXPECT_THAT(warnings(load),
                ElementsAre("3:1: seed_fallback_chains: key 'seed_fallback_chains' is deprecated: "
                            "it is now called 'default_fallback_chains'"));
  }
  ConfigLoad load = parse(std::string(kOneAgent) + "default_fallback_chains: true\n");
  ASSERT_THAT(problems(load), ElementsAre());
  EXPECT_TRUE(load.config->default_fallback_chains);
  EXPECT_THAT(load.warnings, ElementsAre());
}

TEST(FormerNames, AreWarnedAboutByTheFileLoaderWithTheFileName) {
  mend::testing::TempDir dir("mend-config");
  const std::string path = (dir.path() / "mend.yaml").string();
  write_file(path, "store: {path: \":memory:\"}\n" + std::string(kOneAgent) +
                       "policies: {retry: {backoff: {kind: seed}}}\n"
                       "seed_fallback_chains: true\n");
  ConfigLoad load = load_config_file(path);
  ASSERT_TRUE(load.ok()) << ::testing::PrintToString(problems(load));
  EXPECT_TRUE(load.config->default_fallback_chains);
  EXPECT_EQ(load.config->policies.retry.backoff.kind, BackoffKind::error_scaled);
  EXPECT_THAT(load.warnings,
              ElementsAre(path + ":4:36: policies.retry.backoff.kind: backoff kind 'seed' is "
                                 "deprecated: it is now called 'error_scaled'",
                          path + ":5:1: seed_fallback_chains: key 'seed_fallback_chains' is "
                                 "deprecated: it is now called 'default_fallback_chains'"));
}

}  // namespace
}  // namespace mend
