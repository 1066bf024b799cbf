// `mend check-config` run as the real binary: the example is valid, former names are valid
// with a warning each, a broken file lists every problem and exits 1; in text and in --json.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "cli_test_support.h"
#include "mend_test/posix_regex.h"
#include "serve_fixture.h"

namespace mend::testing {
namespace {

using cli_test_support::mend;
using cli_test_support::MendRun;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;

TEST(CliCheckConfig, TheExampleIsValidInTextAndJson) {
  const std::string example = std::string(kSourceDir) + "/examples/mend.yaml";
  MendRun human = mend({"check-config", example});
  ASSERT_EQ(human.exit_code, 0) << human.describe();
  std::optional<std::vector<std::string>> m =
      regex_search(human.out, ": valid \\(([0-9]+) agents, ([0-9]+) supervised\\)");
  ASSERT_TRUE(m) << human.out;
  EXPECT_THAT(human.out, StartsWith(example));
  EXPECT_THAT(human.err, IsEmpty()) << "no warnings: the example uses no former names";

  MendRun js = mend({"check-config", example, "--json"});
  ASSERT_EQ(js.exit_code, 0) << js.describe();
  const json report = js.out_json();
  ASSERT_TRUE(report.is_object()) << js.out;
  EXPECT_EQ(report["valid"], true);
  EXPECT_EQ(report["file"], example);
  EXPECT_EQ(report["agents"].get<int>(), std::stoi((*m)[1]));
  EXPECT_EQ(report["supervised"].get<int>(), std::stoi((*m)[2]));
  EXPECT_GT(report["agents"].get<int>(), 0);
  EXPECT_EQ(report["warnings"], json::array());
}

TEST(CliCheckConfig, FormerNamesAreValidWithAWarningEach) {
  TempDir dir("mend-cli");
  const std::string path = dir.file("old.yaml");
  std::ofstream(path) << "agents:\n"
                         "  - {name: a, url: \"http://127.0.0.1:9001\"}\n"
                         "policies: {retry: {backoff: {kind: seed}}}\n"
                         "seed_fallback_chains: true\n";
  MendRun human = mend({"check-config", path});
  ASSERT_EQ(human.exit_code, 0) << human.describe();
  EXPECT_THAT(human.out, StartsWith(path + ": valid (1 agents, 0 supervised)"));
  EXPECT_THAT(human.err, HasSubstr("warning: " + path +
                                   ":3:36: policies.retry.backoff.kind: backoff kind 'seed' is "
                                   "deprecated: it is now called 'error_scaled'\n"));
  EXPECT_THAT(human.err, HasSubstr("warning: " + path +
                                   ":4:1: seed_fallback_chains: key 'seed_fallback_chains' is "
                                   "deprecated: it is now called 'default_fallback_chains'\n"));

  MendRun js = mend({"check-config", path, "--json"});
  ASSERT_EQ(js.exit_code, 0) << js.describe();
  const json report = js.out_json();
  EXPECT_EQ(report["valid"], true);
  ASSERT_EQ(report["warnings"].size(), 2u) << js.out;

  // Both the former and the new name at once: a problem that names both.
  std::ofstream(path) << "agents:\n"
                         "  - {name: a, url: \"http://127.0.0.1:9001\"}\n"
                         "default_fallback_chains: true\n"
                         "seed_fallback_chains: true\n";
  MendRun both = mend({"check-config", path});
  EXPECT_EQ(both.exit_code, 1) << both.describe();
  EXPECT_THAT(both.err,
              HasSubstr(path + ":4:1: seed_fallback_chains: give either "
                               "default_fallback_chains or seed_fallback_chains (its former "
                               "name), not both"));
}

TEST(CliCheckConfig, ABrokenFileListsEveryProblemInTextAndJsonAndExitsOne) {
  const std::string broken = std::string(kSourceDir) + "/tests/serve/data/broken.yaml";
  const std::vector<std::string> expected = expected_broken_problems(broken);
  ASSERT_GE(expected.size(), 10u);

  MendRun human = mend({"check-config", broken});
  EXPECT_EQ(human.exit_code, 1);
  EXPECT_THAT(human.out, IsEmpty());
  for (const std::string& problem : expected)
    EXPECT_THAT(human.err, HasSubstr(broken + ":" + problem));
  EXPECT_THAT(human.err, HasSubstr(std::to_string(expected.size()) + " problems"));

  MendRun js = mend({"check-config", broken, "--json"});
  EXPECT_EQ(js.exit_code, 1);
  const json report = js.out_json();
  ASSERT_TRUE(report.is_object()) << js.out;
  EXPECT_EQ(report["valid"], false);
  ASSERT_EQ(report["problems"].size(), expected.size()) << js.out;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const json& p = report["problems"][i];
    EXPECT_EQ(std::to_string(p["line"].get<int>()) + ":" + std::to_string(p["column"].get<int>()) +
                  ": " + p["key"].get<std::string>() + ": " + p["message"].get<std::string>(),
              expected[i]);
  }
}

}  // namespace
}  // namespace mend::testing
