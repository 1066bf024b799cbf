// `mend check-config` as its own process: the example is valid, and a broken file names each
// error with its line.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "serve_fixture.h"

namespace mend::testing {
namespace {

using ::testing::HasSubstr;

TEST(CheckConfig, TheExampleIsValidAndABrokenFileNamesEachErrorWithItsLine) {
  ::unsetenv("MEND_BROKEN_YAML_UNSET_TOKEN");  // the broken file expects it unset
  TempDir dir("mend-check");
  {
    ChildProcess ok(kMendBinary, {"check-config", std::string(kSourceDir) + "/examples/mend.yaml"},
                    dir.file("ok.err"));
    std::optional<std::string> line = ok.read_line(10s);
    ASSERT_TRUE(line.has_value());
    EXPECT_THAT(*line, HasSubstr("valid"));
    std::optional<int> status = ok.wait_exit(10s);
    ASSERT_TRUE(status.has_value());
    EXPECT_EQ(WEXITSTATUS(*status), 0);
  }
  const std::string broken = std::string(kSourceDir) + "/tests/serve/data/broken.yaml";
  ChildProcess bad(kMendBinary, {"check-config", broken}, dir.file("bad.err"));
  std::optional<int> status = bad.wait_exit(10s);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(WEXITSTATUS(*status), 1);
  std::ifstream in(dir.file("bad.err"));
  std::stringstream errors;
  errors << in.rdbuf();
  std::vector<std::string> expected = expected_broken_problems(broken);
  ASSERT_GE(expected.size(), 10u);
  std::vector<std::string> printed;
  for (std::string line; std::getline(errors, line);) printed.push_back(line);
  for (const std::string& problem : expected) {
    EXPECT_THAT(printed, ::testing::Contains(broken + ":" + problem));
  }
  // One line per problem, then the count.
  EXPECT_EQ(printed.size(), expected.size() + 1);
  EXPECT_THAT(printed.back(), HasSubstr(std::to_string(expected.size()) + " problems"));
}

}  // namespace
}  // namespace mend::testing
