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
