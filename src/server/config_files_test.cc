// A configuration loaded from its file: relative paths resolved against its directory, a file
// others may read, unreadable and empty files, and truncated or hostile input.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <string>

#include "config_test_support.h"
#include "mend/server/config.h"
#include "mend_test/temp_dir.h"

namespace mend {
namespace {

namespace fs = std::filesystem;
using config_test_support::kOneAgent;
using config_test_support::kSourceDir;
using config_test_support::parse;
using config_test_support::problems;
using config_test_support::read_file;
using config_test_support::write_file;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

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

// --- Files and robustness -----------------------------------------------------------------

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

}  // namespace
}  // namespace mend
